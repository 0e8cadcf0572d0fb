"""The database record store: the unique (scope, key) index decides who runs.

Every write is one statement. The claim is an insert that does nothing on
conflict, never check-then-insert, so two requests can never both acquire a
key at any isolation level. Every later write is conditional on the version
its writer read, which fences off a worker that lost its lock. The call runs
in a transaction that commits together with the stored outcome.

The SQL is built once per store (``Statements``); ``get_store`` keeps one
store per database alias. ``stores.postgresql`` refines the claim for
PostgreSQL (one prepared statement, committed without a flush).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any

from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    connections,
    transaction,
)

from idempotency.fields import KEY_LENGTH, SCOPE_LENGTH
from idempotency.models import IdempotencyRecord, Status
from idempotency.stores.base import (
    Attempt,
    Claim,
    ClaimOutcome,
    StoreContentionError,
    StoredResponse,
    StoreMisconfiguredError,
    StoreUnavailableError,
)
from idempotency.stores.dialects import Dialect, dialect_for
from idempotency.stores.transactions import (
    after_commits,
    enclosing_rollback_elsewhere,
    leave,
    refused_durable,
)

logger = logging.getLogger("idempotency")

# A claim that finds the record changing under it (released, taken over)
# reads again; after this many rounds it reports the key as in progress.
CLAIM_ROUNDS = 3
# The columns of a fresh claim, in the order of ``Statements.claim_values``.
CLAIM_COLUMNS = ("scope", "key", "fingerprint", "method", "path", "locked_until", "expires_at")


@dataclass
class _Transaction:
    """The transaction an acquired call runs in: our own atomic block (a
    savepoint inside an enclosing one, such as ATOMIC_REQUESTS'), while it is
    open; None once it ended, or when the call owns its transactions."""

    atomic: Any


class Statements:
    """The store's SQL for one backend and table, built once."""

    def __init__(self, dialect: Dialect, quote: Callable[[str], str]) -> None:
        meta = IdempotencyRecord._meta
        self.dialect = dialect
        self.table = t = quote(meta.db_table)
        self.c = c = {f.name: quote(str(f.column)) for f in meta.concrete_fields}
        d = dialect
        # A fresh in-progress claim, for insert and takeover alike; the
        # placeholders follow CLAIM_COLUMNS minus scope and key.
        fresh = {
            "fingerprint": "%s",
            "status": f"'{Status.IN_PROGRESS.value}'",
            "method": "%s",
            "path": "%s",
            "response_status": "NULL",
            "response_headers": "'{}'",
            "response_body": "NULL",
            "sensitive": d.false,
            "locked_until": d.now_plus,
            "created_at": d.now,
            "expires_at": d.now_plus,
        }
        values = {"scope": "%s", "key": "%s", "version": "1", **fresh}
        self.insert_columns = ", ".join(c[name] for name in values)
        self.claim_values = ", ".join(values.values())
        self.insert = (
            f"{d.insert} {t} ({self.insert_columns}) VALUES ({self.claim_values}) "
            + d.on_conflict.format(id=c["id"])
        )
        self.insert_nowait = d.nowait + self.insert
        assignments = ", ".join(f"{c[name]} = {sql}" for name, sql in fresh.items())
        self.take_over = (
            f"UPDATE {t} SET {assignments}, {c['version']} = {c['version']} + 1 "
            f"WHERE {c['id']} = %s AND {c['version']} = %s AND ({c['locked_until']} <= {d.now} "
            f"OR ({c['status']} = '{Status.COMPLETED.value}' AND {c['expires_at']} <= {d.now}))"
        )
        # What _judge reads of a record, expiry judged by the database clock.
        self.record_columns = (
            f"{c['id']}, {c['version']}, {c['fingerprint']}, {c['status']}, "
            f"{c['response_status']}, {c['response_headers']}, {c['response_body']}, "
            f"{c['sensitive']}, CASE WHEN {c['expires_at']} <= {d.now} THEN 1 ELSE 0 END, "
            f"{d.seconds_until.format(column=c['locked_until'])}"
        )
        self.read = (
            f"SELECT {self.record_columns} FROM {t} WHERE {c['scope']} = %s AND {c['key']} = %s"
        )
        self.complete = (
            f"UPDATE {t} SET {c['status']} = '{Status.COMPLETED.value}', "
            f"{c['response_status']} = %s, {c['response_headers']} = %s, "
            f"{c['response_body']} = %s, {c['sensitive']} = %s, "
            f"{c['version']} = {c['version']} + 1, {c['locked_until']} = NULL "
            f"WHERE {c['id']} = %s AND {c['version']} = %s"
        )
        self.release = f"DELETE FROM {t} WHERE {c['id']} = %s AND {c['version']} = %s"
        self.held = f"SELECT 1 FROM {t} WHERE {c['id']} = %s AND {c['version']} = %s{d.lock_nowait}"

    def read_any(self, count: int) -> str:
        """``read`` for one of ``count`` keys (the digests under old secrets)."""
        keys = ", ".join(["%s"] * count)
        c = self.c
        return (
            f"SELECT {self.record_columns} FROM {self.table} "
            f"WHERE {c['scope']} = %s AND {c['key']} IN ({keys})"
        )

    def fresh_params(self, attempt: Attempt) -> list[Any]:
        d = self.dialect
        return [
            attempt.fingerprint,
            attempt.method,
            attempt.path,
            d.offset(attempt.lock_for),
            d.offset(attempt.ttl),
        ]

    def claim_params(self, attempt: Attempt) -> list[Any]:
        return [attempt.scope, attempt.key, *self.fresh_params(attempt)]

    @staticmethod
    def complete_params(claim: Claim, response: StoredResponse) -> list[Any]:
        return [
            response.status,
            json.dumps(response.headers),
            response.body,
            response.sensitive,
            claim.record_id,
            claim.version,
        ]


class DatabaseRecordStore:
    def __init__(self, alias: str, connection: Any = None) -> None:
        self.alias = alias
        self._connection = connection  # a given connection, else the thread's for ``alias``
        self._sql: Statements | None = None

    @property
    def sql(self) -> Statements:
        # Built on first use, inside the store's error handling: telling
        # MariaDB from MySQL needs the server, which may be unreachable.
        if self._sql is None:
            self._sql = self._statements()
        return self._sql

    def _statements(self) -> Statements:
        return Statements(dialect_for(self.connection), self.connection.ops.quote_name)

    @property
    def connection(self) -> Any:
        # Looked up on each use: connections are per thread, and an async
        # view's store calls run in a worker thread.
        return self._connection or connections[self.alias]

    # ------------------------------------------------------------ protocol

    def claim(self, attempt: Attempt) -> Claim:
        self._refuse_oversized(attempt)
        connection = self.connection
        nested = connection.in_atomic_block
        if nested and connection.needs_rollback:
            # An earlier claim of this request failed inside the enclosing
            # transaction, which can only roll back now.
            raise StoreContentionError("the enclosing transaction is marked for rollback")
        try:
            with self._reachable():
                claim = self._claim(attempt)
        except (StoreContentionError, StoreUnavailableError, StoreMisconfiguredError):
            if nested and connection.vendor == "postgresql":
                # PostgreSQL aborted the enclosing transaction: it cannot commit.
                transaction.set_rollback(True, using=self.alias)
            raise
        if claim.outcome is not ClaimOutcome.ACQUIRED:
            return claim
        atomic = None
        if attempt.atomic:
            atomic = transaction.atomic(using=self.alias)
            with self._reachable():
                atomic.__enter__()
        # Built directly: dataclasses.replace reads the fields on every call.
        return Claim(claim.outcome, claim.record_id, claim.version, claim.response,
                     claim.taken_over, claim.lock_remaining, _Transaction(atomic))  # fmt: skip

    def finish(self, claim: Claim, response: StoredResponse, on_commit: Callable[[], None]) -> bool:
        txn: _Transaction = claim.transaction  # type: ignore[assignment]
        later = self._enclosing_on_other_databases()
        if later:
            # The call's writes on those databases commit after it returns:
            # storing the outcome first would let a failed commit there be
            # replayed as a success (docs/transactions.md, several databases).
            # A call that lost its lock meanwhile commits nothing, there either.
            try:
                held = self._still_held(claim)
            except BaseException:
                self._roll_back_enclosing(later)
                raise
            if not held:
                self._end(txn, rollback=True)
                self._roll_back_enclosing(later)
                return False
            self._end(txn)
            self._complete_after(later, claim, response, on_commit)
            return True
        if not self._complete_and_end(txn, claim, response):
            return False
        # At once in autocommit; with an enclosing transaction, after it commits.
        transaction.on_commit(on_commit, using=self.alias)
        return True

    def release(self, claim: Claim) -> bool:
        self._end(claim.transaction, rollback=True)  # type: ignore[arg-type]
        with self._reachable():
            return self._execute(self.sql.release, [claim.record_id, claim.version]) == 1

    def rollback_requested(self, claim: Claim) -> bool:
        txn: _Transaction = claim.transaction  # type: ignore[assignment]
        if txn.atomic is not None and self.connection.needs_rollback:
            return True
        return enclosing_rollback_elsewhere(self.alias)

    def refused_durable_block(self, claim: Claim, error: BaseException) -> bool:
        txn: _Transaction = claim.transaction  # type: ignore[assignment]
        return refused_durable(error, txn.atomic, self.alias)

    # ------------------------------------------------------------ the claim

    def _refuse_oversized(self, attempt: Attempt) -> None:
        # MariaDB's INSERT IGNORE would store a truncated scope even in strict
        # mode, and the claim would then never find its own record again.
        for name, value, limit in (("scope", attempt.scope, SCOPE_LENGTH),
                                   ("key", attempt.key, KEY_LENGTH)):  # fmt: skip
            if len(value) > limit:
                raise ValueError(f"The idempotency {name} is longer than its column ({limit}).")

    def _claim(self, attempt: Attempt) -> Claim:
        if attempt.previous_keys:
            rows = self._rows(self.sql.read_any(len(attempt.previous_keys)),
                              [attempt.scope, *attempt.previous_keys])  # fmt: skip
            claim = self._judge(attempt, rows[0]) if rows else None
            if claim is not None:
                return claim
        # Inside an enclosing transaction on InnoDB, a duplicate's INSERT IGNORE
        # would wait on the first request's uncommitted row holding a next-key
        # lock request that blocks other callers' new keys in the same index
        # gap: read first (a consistent read locks nothing), and insert without
        # waiting (a lock conflict is the duplicate's 409).
        gap_locks = self.connection.in_atomic_block and bool(self.sql.dialect.nowait)
        if gap_locks:
            rows = self._rows(self.sql.read, [attempt.scope, attempt.key])
            claim = self._judge(attempt, rows[0]) if rows else None
            if claim is not None:
                return claim
        for _ in range(CLAIM_ROUNDS):
            record_id, row = self._insert_or_read(attempt, nowait=gap_locks)
            if record_id is not None:
                return Claim(ClaimOutcome.ACQUIRED, record_id, version=1)
            if row is None:
                continue  # released between our insert and our read
            claim = self._judge(attempt, row)
            if claim is not None:
                return claim
        return Claim(ClaimOutcome.IN_PROGRESS)

    def _insert_or_read(
        self, attempt: Attempt, nowait: bool = False
    ) -> tuple[int | None, Sequence[Any] | None]:
        """Insert the claim: (its id, None); or, when (scope, key) exists,
        (None, the record as ``_judge`` reads it, or None if it just went)."""
        sql = self.sql.insert_nowait if nowait else self.sql.insert
        with self._cursor() as cursor:
            cursor.execute(sql, self.sql.claim_params(attempt))
            if self.sql.dialect.returns_id:
                row = cursor.fetchone()
                inserted = None if row is None else int(row[0])
            else:
                inserted = int(cursor.lastrowid) if cursor.rowcount == 1 else None
        if inserted is not None:
            return inserted, None
        rows = self._rows(self.sql.read, [attempt.scope, attempt.key])
        return None, rows[0] if rows else None

    def _judge(self, attempt: Attempt, row: Sequence[Any], take_over: bool = True) -> Claim | None:
        """What a record means for ``attempt``; ``None`` when it must be read
        again (a takeover lost to another request, or not made: ``take_over``)."""
        record_id, version, fingerprint, status, *response, sensitive, expired, lock_left = row
        in_progress = status == Status.IN_PROGRESS
        lock_expired = lock_left is None or float(lock_left) <= 0
        if expired and not (in_progress and not lock_expired):
            # Past its expiry a record is as if absent: any request may reuse
            # the key. A request still running under a live lock keeps it,
            # even past the TTL, or a view slower than its TTL could run twice.
            return self._take_over(attempt, record_id, version) if take_over else None
        if fingerprint != attempt.fingerprint:
            return Claim(ClaimOutcome.MISMATCH, record_id, version)
        if in_progress and lock_expired:
            return self._take_over(attempt, record_id, version) if take_over else None
        if in_progress:
            remaining = timedelta(seconds=float(lock_left))
            return Claim(ClaimOutcome.IN_PROGRESS, record_id, version, lock_remaining=remaining)
        stored = _stored(*response, sensitive=bool(sensitive))
        return Claim(ClaimOutcome.REPLAY, record_id, version, response=stored)

    def _take_over(self, attempt: Attempt, record_id: int, version: int) -> Claim | None:
        params = [*self.sql.fresh_params(attempt), record_id, version]
        if self._execute(self.sql.take_over, params) != 1:
            return None  # another request took it first: read again
        return Claim(ClaimOutcome.ACQUIRED, record_id, version + 1, taken_over=True)

    # ------------------------------------------------------- the outcome

    def _complete_and_end(self, txn: _Transaction, claim: Claim, response: StoredResponse) -> bool:
        """Store the outcome and leave the call's transaction, committing it;
        ``False`` (rolled back) when another writer holds the record."""
        with self._reachable():
            stored = self._complete(claim, response)
        self._end(txn, rollback=not stored)
        return stored

    def _still_held(self, claim: Claim) -> bool:
        """Whether the record is still at the version this call claimed it at
        (no other request took it over), read inside the call's transaction:
        a locking read, so MariaDB's repeatable read sees the newest version."""
        with self._reachable():
            return bool(self._rows(self.sql.held, [claim.record_id, claim.version]))

    @staticmethod
    def _roll_back_enclosing(aliases: list[str]) -> None:
        for alias in aliases:
            transaction.set_rollback(True, using=alias)

    def _complete(self, claim: Claim, response: StoredResponse) -> bool:
        return self._execute(self.sql.complete, self.sql.complete_params(claim, response)) == 1

    def _complete_after(
        self,
        aliases: list[str],
        claim: Claim,
        response: StoredResponse,
        on_commit: Callable[[], None],
    ) -> None:
        def complete() -> None:
            try:
                with self._reachable():
                    stored = self._complete(claim, response)
            except (StoreUnavailableError, StoreContentionError) as error:
                # The call's writes are committed and its outcome is not: the
                # record stays in progress until LOCK_TIMEOUT.
                logger.error(
                    "Idempotency outcome lost after the call committed (the record stays in "
                    "progress until LOCK_TIMEOUT) record=%s: %s", claim.record_id, error,
                )  # fmt: skip
                return
            if stored:
                on_commit()

        after_commits(aliases, complete)

    def _enclosing_on_other_databases(self) -> list[str]:
        if len(connections.settings) == 1:
            return []  # one database: there is no other
        return [
            connection.alias
            for connection in connections.all(initialized_only=True)
            if connection.alias != self.alias and connection.in_atomic_block
        ]

    def _end(self, txn: _Transaction | None, rollback: bool = False) -> None:
        """Leave our own atomic block, committing unless ``rollback``."""
        if txn is None:
            return
        atomic, txn.atomic = txn.atomic, None
        if atomic is None:
            return
        # A commit that fails after the call returned (the connection lost, a
        # serialization failure) is the store's failure, not the call's.
        try:
            leave(atomic, rollback)
        except (OperationalError, InterfaceError) as error:
            raise _translated(error) from error

    # ------------------------------------------------------------ plumbing

    def _cursor(self) -> Any:
        return self.connection.cursor()

    def _execute(self, sql: str, params: list[Any]) -> int:
        with self._cursor() as cursor:
            cursor.execute(sql, params)
            return int(cursor.rowcount)

    def _rows(self, sql: str, params: list[Any]) -> list[Sequence[Any]]:
        with self._cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    def _reachable(self) -> _Reachable:
        return _Reachable(self.alias)


class _Reachable:
    """Database errors as the store's: a class, not a generator, as it runs
    around every statement.

    Connection failures mean "cannot tell who holds the key": the caller
    answers 503 rather than run unprotected. Lock conflicts mean a
    concurrent request on the same key: 409. A missing table is a
    deployment error, loud, not an outage.
    """

    __slots__ = ("alias",)

    def __init__(self, alias: str) -> None:
        self.alias = alias

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:  # fmt: skip
        if not isinstance(error, DatabaseError):
            return
        if _is_missing_table(error):
            raise StoreMisconfiguredError(
                f"The idempotency records table or its functions do not exist in database "
                f"{self.alias!r}: run manage.py migrate idempotency --database {self.alias}."
            ) from error
        if isinstance(error, OperationalError | InterfaceError):
            raise _translated(error) from error


# PostgreSQL SQLSTATEs: serialization_failure, deadlock_detected,
# lock_not_available. MariaDB error numbers: lock wait timeout, deadlock.
CONTENTION_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
CONTENTION_ERRNOS = frozenset({1205, 1213})
# PostgreSQL undefined_table and undefined_function (migration 0004 not run);
# MariaDB ER_NO_SUCH_TABLE; SQLite's message.
MISSING_TABLE_SQLSTATES = frozenset({"42P01", "42883"})
MISSING_TABLE_ERRNOS = frozenset({1146})


def _translated(error: Exception) -> Exception:
    if _is_contention(error):
        return StoreContentionError(str(error))
    return StoreUnavailableError(str(error))


def _driver_error(error: Exception) -> BaseException:
    return error.__cause__ or error


def _error_code(error: Exception) -> object:
    driver_error = _driver_error(error)
    return driver_error.args[0] if driver_error.args else None


def _is_contention(error: Exception) -> bool:
    if getattr(_driver_error(error), "sqlstate", None) in CONTENTION_SQLSTATES:
        return True
    code = _error_code(error)
    return isinstance(code, int) and code in CONTENTION_ERRNOS


def _is_missing_table(error: Exception) -> bool:
    if getattr(_driver_error(error), "sqlstate", None) in MISSING_TABLE_SQLSTATES:
        return True
    code = _error_code(error)
    if isinstance(code, int):
        return code in MISSING_TABLE_ERRNOS
    return isinstance(code, str) and code.startswith("no such table")


def _stored(status: int | None, headers: Any, body: Any, *, sensitive: bool) -> StoredResponse:
    if isinstance(headers, str | bytes):
        headers = json.loads(headers)
    return StoredResponse(
        status=int(status or 0),
        headers=dict(headers or {}),
        body=None if body is None else bytes(body),
        sensitive=sensitive,
    )
