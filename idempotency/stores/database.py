"""The database record store: the unique (scope, key) index decides who runs.

Every write is one statement. The claim is an insert that does nothing on
conflict, never check-then-insert, so two requests can never both acquire a
key at any isolation level. Every later write is conditional on the version
its writer read, which fences off a worker that lost its lock.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.db import InterfaceError, OperationalError, connections, transaction

from idempotency.models import IdempotencyRecord, Status
from idempotency.stores.base import (
    Attempt,
    Claim,
    ClaimOutcome,
    StoreContentionError,
    StoredResponse,
    StoreUnavailableError,
)
from idempotency.stores.dialects import Dialect, dialect_for

# A claim that finds the record changing under it (released, taken over)
# reads again; after this many rounds it reports the key as in progress.
CLAIM_ROUNDS = 3


class DatabaseRecordStore:
    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.connection = connections[alias]
        self.dialect: Dialect = dialect_for(self.connection.vendor)
        meta = IdempotencyRecord._meta
        quote = self.connection.ops.quote_name
        self.table = quote(meta.db_table)
        self.c = {f.name: quote(str(f.column)) for f in meta.concrete_fields}

    @contextmanager
    def transaction(self) -> Iterator[None]:
        # A commit that fails after the view returned (the connection lost, a
        # serialization failure) is the store's failure, not the view's:
        # it is answered 503 or 409 like the store's other failures. Errors
        # raised by the view itself pass through untouched.
        committing = False
        try:
            with transaction.atomic(using=self.alias):
                yield
                committing = True
        except (OperationalError, InterfaceError) as error:
            if not committing:
                raise
            raise _translated(error) from error

    def on_commit(self, callback: Callable[[], object]) -> None:
        transaction.on_commit(callback, using=self.alias)

    def claim(self, attempt: Attempt) -> Claim:
        self._refuse_oversized(attempt)
        with self._reachable():
            for _ in range(CLAIM_ROUNDS):
                record_id = self._insert(attempt)
                if record_id is not None:
                    return Claim(ClaimOutcome.ACQUIRED, record_id, version=1)
                row = self._read(attempt.scope, attempt.key)
                if row is None:
                    continue  # released between our insert and our read
                claim = self._judge(attempt, row)
                if claim is not None:
                    return claim
        return Claim(ClaimOutcome.IN_PROGRESS)

    def complete(self, claim: Claim, response: StoredResponse) -> bool:
        c = self.c
        sql = (
            f"UPDATE {self.table} SET {c['status']} = %s, {c['response_status']} = %s, "
            f"{c['response_headers']} = %s, {c['response_body']} = %s, "
            f"{c['version']} = {c['version']} + 1, {c['locked_until']} = NULL "
            f"WHERE {c['id']} = %s AND {c['version']} = %s"
        )
        params = [
            Status.COMPLETED.value,
            response.status,
            json.dumps(response.headers),
            response.body,
            claim.record_id,
            claim.version,
        ]
        with self._reachable():
            return self._execute(sql, params) == 1

    def release(self, claim: Claim) -> bool:
        c = self.c
        sql = f"DELETE FROM {self.table} WHERE {c['id']} = %s AND {c['version']} = %s"
        with self._reachable():
            return self._execute(sql, [claim.record_id, claim.version]) == 1

    def _refuse_oversized(self, attempt: Attempt) -> None:
        # MariaDB's INSERT IGNORE would store a truncated key even in strict
        # mode, and the claim would then never find its own record again.
        for name in ("scope", "key"):
            limit = getattr(IdempotencyRecord._meta.get_field(name), "max_length", 0)
            if len(getattr(attempt, name)) > limit:
                raise ValueError(f"The idempotency {name} is longer than its column ({limit}).")

    def _fresh_claim(self, attempt: Attempt) -> dict[str, tuple[str, list[Any]]]:
        """Column -> (SQL, params) of an in-progress claim, for insert and takeover alike."""
        d = self.dialect
        return {
            "fingerprint": ("%s", [attempt.fingerprint]),
            "status": ("%s", [Status.IN_PROGRESS.value]),
            "method": ("%s", [attempt.method]),
            "path": ("%s", [attempt.path]),
            "response_status": ("NULL", []),
            "response_headers": ("'{}'", []),
            "response_body": ("NULL", []),
            "locked_until": (d.now_plus, [d.offset(attempt.lock_for)]),
            "created_at": (d.now, []),
            "expires_at": (d.now_plus, [d.offset(attempt.ttl)]),
        }

    def _insert(self, attempt: Attempt) -> int | None:
        """Insert the claim; its id, or None when (scope, key) exists.

        A plain insert, read separately only on conflict: on PostgreSQL a
        single statement that also returned the existing record (a
        data-modifying CTE) was measured at ~190 us more per new key to save
        ~30 us per replay (benchmarks/results), and new keys are the hot path.
        """
        c, d = self.c, self.dialect
        values = {
            "scope": ("%s", [attempt.scope]),
            "key": ("%s", [attempt.key]),
            "version": ("1", []),
            **self._fresh_claim(attempt),
        }
        columns = ", ".join(c[name] for name in values)
        placeholders = ", ".join(sql for sql, _ in values.values())
        sql = (
            f"{d.insert} {self.table} ({columns}) VALUES ({placeholders}) "
            + d.on_conflict.format(id=c["id"])
        )
        params = [param for _, params in values.values() for param in params]
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            if d.returns_id:
                row = cursor.fetchone()
                return None if row is None else int(row[0])
            return int(cursor.lastrowid) if cursor.rowcount == 1 else None

    def _read(self, scope: str, key: str) -> Sequence[Any] | None:
        """The record as ``_judge`` reads it, expiry judged by the database clock."""
        c, now = self.c, self.dialect.now
        sql = (
            f"SELECT {c['id']}, {c['version']}, {c['fingerprint']}, {c['status']}, "
            f"{c['response_status']}, {c['response_headers']}, {c['response_body']}, "
            f"CASE WHEN {c['expires_at']} <= {now} THEN 1 ELSE 0 END, "
            f"CASE WHEN {c['locked_until']} <= {now} THEN 1 ELSE 0 END "
            f"FROM {self.table} WHERE {c['scope']} = %s AND {c['key']} = %s"
        )
        with self.connection.cursor() as cursor:
            cursor.execute(sql, [scope, key])
            row: Sequence[Any] | None = cursor.fetchone()
            return row

    def _judge(self, attempt: Attempt, row: Sequence[Any]) -> Claim | None:
        record_id, version, fingerprint, status, *response, expired, lock_expired = row
        in_progress = status == Status.IN_PROGRESS
        if expired and not (in_progress and not lock_expired):
            # Past its expiry a record is as if absent: any request may reuse
            # the key. A request still running under a live lock keeps it,
            # even past the TTL, or a view slower than its TTL could run twice.
            return self._take_over(attempt, record_id, version)
        if fingerprint != attempt.fingerprint:
            return Claim(ClaimOutcome.MISMATCH, record_id, version)
        if in_progress and lock_expired:
            return self._take_over(attempt, record_id, version)
        if in_progress:
            return Claim(ClaimOutcome.IN_PROGRESS, record_id, version)
        return Claim(ClaimOutcome.REPLAY, record_id, version, response=_stored(*response))

    def _take_over(self, attempt: Attempt, record_id: int, version: int) -> Claim | None:
        c, now = self.c, self.dialect.now
        values = self._fresh_claim(attempt)
        assignments = ", ".join(f"{c[name]} = {sql}" for name, (sql, _) in values.items())
        sql = (
            f"UPDATE {self.table} SET {assignments}, {c['version']} = {c['version']} + 1 "
            f"WHERE {c['id']} = %s AND {c['version']} = %s AND ({c['locked_until']} <= {now} "
            f"OR ({c['status']} = %s AND {c['expires_at']} <= {now}))"
        )
        params = [param for _, params in values.values() for param in params]
        params += [record_id, version, Status.COMPLETED.value]
        if self._execute(sql, params) != 1:
            return None  # another request took it first: read again
        return Claim(ClaimOutcome.ACQUIRED, record_id, version + 1, taken_over=True)

    def _execute(self, sql: str, params: list[Any]) -> int:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return int(cursor.rowcount)

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        # Connection failures mean "cannot tell who holds the key": the caller
        # answers 503 rather than run the view unprotected. Lock conflicts
        # mean a concurrent request on the same key: 409. Programming errors
        # (a missing table) stay loud.
        try:
            yield
        except (OperationalError, InterfaceError) as error:
            raise _translated(error) from error


# PostgreSQL SQLSTATEs: serialization_failure, deadlock_detected,
# lock_not_available. MariaDB error numbers: lock wait timeout, deadlock.
CONTENTION_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
CONTENTION_ERRNOS = frozenset({1205, 1213})


def _translated(error: Exception) -> Exception:
    if _is_contention(error):
        return StoreContentionError(str(error))
    return StoreUnavailableError(str(error))


def _is_contention(error: Exception) -> bool:
    driver_error = error.__cause__ or error
    if getattr(driver_error, "sqlstate", None) in CONTENTION_SQLSTATES:
        return True
    code = driver_error.args[0] if driver_error.args else None
    return isinstance(code, int) and code in CONTENTION_ERRNOS


def _stored(status: int | None, headers: Any, body: Any) -> StoredResponse:
    if isinstance(headers, (str, bytes)):
        headers = json.loads(headers)
    return StoredResponse(
        status=int(status or 0),
        headers=dict(headers or {}),
        body=None if body is None else bytes(body),
    )
