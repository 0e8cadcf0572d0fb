"""The Redis record store (contract section 6): one hash per (scope, key).

Every decision is a Lua script on the server (``stores.redis_scripts``): the
claim (insert-or-judge, one round trip, a replay included), and the fenced
writes (confirm, complete, release), which change nothing unless the record
still carries the writer's id and version. Each script touches one key, so a
Redis Cluster runs it in whichever slot the key hashes to.

The call's database writes cannot commit with its stored outcome. The call
runs in a transaction on ``DATABASE``; before it commits, the store confirms
that the claim still owns the record (a worker whose lock was taken over
rolls back, and so does one whose lock ran out); after it commits, the
outcome is stored. A worker that dies between the two leaves the record in
progress until ``LOCK_TIMEOUT``, when a retry takes it over and runs again
(docs/redis.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import InterfaceError, OperationalError, connections, transaction

from idempotency.stores.base import (
    Attempt,
    Claim,
    ClaimOutcome,
    StoredResponse,
    StoreMisconfiguredError,
    StoreUnavailableError,
)
from idempotency.stores.redis_connection import connection
from idempotency.stores.transactions import (
    after_commits,
    enclosed,
    enclosing_rollback_elsewhere,
    leave,
    refused_durable,
)

logger = logging.getLogger("idempotency")


@dataclass
class _Handle:
    """What an acquired claim carries: its Redis key, its lock's length (what
    CONFIRM renews it to), and the call's transaction while it is open (None
    once it ended, or when the call owns its transactions)."""

    key: str
    alias: str
    lock_ms: int
    atomic: Any = None


class _Marker:
    """An on_commit hook that only notes that it ran: while it waits in a
    connection's ``run_on_commit`` the transaction it was registered in may
    still commit; once it is gone without having run, that transaction (or
    the savepoint) rolled back."""

    def __init__(self) -> None:
        self.ran = False

    def __call__(self) -> None:
        self.ran = True


@dataclass
class _Deferred:
    """A completion waiting for the enclosing transactions to commit."""

    record_id: str
    version: int
    response: StoredResponse
    markers: list[tuple[str, _Marker]]

    def pending(self) -> bool:
        """Whether it may still be stored: no enclosing block it waits for
        has rolled back."""
        return all(
            marker.ran
            or any(hook[1] is marker for hook in getattr(connections[alias], "run_on_commit", ()))
            for alias, marker in self.markers
        )


def record_key(prefix: str, scope: str, key: str) -> str:
    """The Redis key of (scope, key): the prefix and a digest of both, so no
    scope or key (hash-tag braces, glob characters, any length) can name
    another record, or choose its cluster slot."""
    scope_bytes = scope.encode("utf-8", "surrogatepass")
    material = b"%d:" % len(scope_bytes) + scope_bytes + key.encode("utf-8", "surrogatepass")
    return prefix + hashlib.sha256(material).hexdigest()


class RedisRecordStore:
    def __init__(self, url: str | None, cluster: bool, prefix: str) -> None:
        self.url = url
        self.cluster = cluster
        self.prefix = prefix
        # Per thread, as Django's connections are: the completions this
        # thread's enclosing transactions wait to commit, by Redis key.
        self._local = threading.local()

    # ------------------------------------------------------------ protocol

    def claim(self, attempt: Attempt) -> Claim:
        for previous in attempt.previous_keys:
            claim = self._claim_key(
                attempt, record_key(self.prefix, attempt.scope, previous), False
            )
            if claim is not None:
                return claim
        claim = self._claim_key(attempt, record_key(self.prefix, attempt.scope, attempt.key), True)
        # A creating claim always judges; None would be a script out of step.
        return claim or Claim(ClaimOutcome.IN_PROGRESS)

    def finish(self, claim: Claim, response: StoredResponse, on_commit: Callable[[], None]) -> bool:
        handle: _Handle = claim.transaction  # type: ignore[assignment]
        if handle.atomic is not None:
            confirmed = self._run("CONFIRM", handle.key,
                                  [claim.record_id, claim.version, handle.lock_ms])  # fmt: skip
            if not confirmed:
                # Taken over, or its lock ran out so that a retry may take it
                # over at any moment: the call's writes go.
                self._end(handle, rollback=True)
                return False
            self._end(handle)
        later = [c.alias for c in connections.all(initialized_only=True) if enclosed(c)]
        if later:
            # An enclosing transaction (ATOMIC_REQUESTS) commits after the
            # call returns: storing the outcome first could replay a success
            # whose writes then rolled back.
            self._complete_after(later, handle, claim, response, on_commit)
            return True
        return self._complete(handle, claim, response, on_commit)

    def release(self, claim: Claim) -> bool:
        handle: _Handle = claim.transaction  # type: ignore[assignment]
        self._end(handle, rollback=True)
        return bool(self._run("RELEASE", handle.key, [claim.record_id, claim.version]))

    def rollback_requested(self, claim: Claim) -> bool:
        handle: _Handle = claim.transaction  # type: ignore[assignment]
        if handle.atomic is not None and connections[handle.alias].needs_rollback:
            return True
        return enclosing_rollback_elsewhere(handle.alias)

    def refused_durable_block(self, claim: Claim, error: BaseException) -> bool:
        handle: _Handle = claim.transaction  # type: ignore[assignment]
        return refused_durable(error, handle.atomic, handle.alias)

    # ------------------------------------------------------------ the claim

    def _claim_key(self, attempt: Attempt, key: str, create: bool) -> Claim | None:
        reply = self._run("CLAIM", key, [
            uuid.uuid4().hex, attempt.fingerprint, attempt.method, attempt.path,
            _ms(attempt.lock_for), _ms(attempt.ttl), int(create),
        ])  # fmt: skip
        outcome = _text(reply[0])
        if outcome == "absent":
            return None
        record_id, version = _text(reply[1]), int(reply[2])
        if outcome == "acquired":
            return self._acquired(attempt, key, record_id, version, taken_over=bool(reply[3]))
        if outcome == "mismatch":
            return Claim(ClaimOutcome.MISMATCH, record_id, version)
        if outcome == "in_progress":
            deferred = self._deferred_outcome(key, record_id, version)
            if deferred is not None:
                # This thread's own call completed it inside a transaction
                # that has not committed yet: within that transaction the
                # call has happened, as the database store would show.
                return Claim(ClaimOutcome.REPLAY, record_id, version, response=deferred)
            remaining = timedelta(milliseconds=int(reply[3]))
            return Claim(ClaimOutcome.IN_PROGRESS, record_id, version, lock_remaining=remaining)
        status, headers, body, sensitive = reply[3:7]
        stored = StoredResponse(
            status=int(status or 0),
            headers=json.loads(headers or b"{}"),
            body=None if body is None else bytes(body),
            sensitive=_text(sensitive or b"0") == "1",
        )
        return Claim(ClaimOutcome.REPLAY, record_id, version, response=stored)

    def _acquired(
        self, attempt: Attempt, key: str, record_id: str, version: int, taken_over: bool
    ) -> Claim:
        from idempotency.conf import idempotency_settings

        handle = _Handle(key, idempotency_settings.DATABASE, _ms(attempt.lock_for))
        claim = Claim(ClaimOutcome.ACQUIRED, record_id, version, taken_over=taken_over,
                      transaction=handle)  # fmt: skip
        if attempt.atomic:
            atomic = transaction.atomic(using=handle.alias)
            try:
                atomic.__enter__()
            except (OperationalError, InterfaceError) as error:
                self.release(claim)
                raise StoreUnavailableError(str(error)) from error
            handle.atomic = atomic
        return claim

    # ------------------------------------------------------- the outcome

    def _complete(
        self, handle: _Handle, claim: Claim, response: StoredResponse, on_commit: Callable[[], None]
    ) -> bool:
        try:
            stored = self._store_outcome(handle, claim, response)
        except StoreUnavailableError as error:
            if not _refused(error, response):
                # The call's writes are committed and its outcome is not: the
                # record stays in progress until LOCK_TIMEOUT. Releasing it
                # would let a retry run the call again at once.
                logger.error(
                    "Idempotency outcome lost after the call committed (the record stays in "
                    "progress until LOCK_TIMEOUT) record=%s: %s", claim.record_id, error,
                )  # fmt: skip
                return True
            return self._complete_without_body(handle, claim, response, error)
        if not stored:
            return False
        on_commit()
        return True

    def _complete_without_body(
        self, handle: _Handle, claim: Claim, response: StoredResponse, error: Exception
    ) -> bool:
        """Redis refused the outcome after the call committed (an error reply:
        out of memory; or the body broke the connection: longer than
        proto-max-bulk-len). Kept without its body, as a response over
        MAX_STORED_RESPONSE_BYTES: retries get 410 instead of running the call
        again once the lock runs out."""
        bodiless = StoredResponse(response.status, {}, None, response.sensitive)
        try:
            stored = self._store_outcome(handle, claim, bodiless)
        except StoreUnavailableError as again:
            logger.error(
                "Idempotency outcome lost after the call committed (the record stays in "
                "progress until LOCK_TIMEOUT) record=%s: %s; without its body: %s",
                claim.record_id, error, again,
            )  # fmt: skip
            return True
        if stored:
            logger.error(
                "Idempotency outcome stored without its body: Redis refused it after the "
                "call committed; retries get 410 record=%s: %s", claim.record_id, error,
            )  # fmt: skip
        return bool(stored)

    def _store_outcome(self, handle: _Handle, claim: Claim, response: StoredResponse) -> Any:
        has_body = response.body is not None
        return self._run("COMPLETE", handle.key, [
            claim.record_id, claim.version, response.status, json.dumps(response.headers),
            int(response.sensitive), int(has_body), response.body if has_body else b"",
        ])  # fmt: skip

    def _complete_after(
        self,
        aliases: list[str],
        handle: _Handle,
        claim: Claim,
        response: StoredResponse,
        on_commit: Callable[[], None],
    ) -> None:
        deferred = self._deferred()
        waiting = _Deferred(str(claim.record_id), claim.version, response, [])

        def complete() -> None:
            if deferred.get(handle.key) is waiting:
                del deferred[handle.key]
            self._complete(handle, claim, response, on_commit)

        after_commits(aliases, complete)
        for alias in aliases:
            marker = _Marker()
            transaction.on_commit(marker, using=alias)
            waiting.markers.append((alias, marker))
        deferred[handle.key] = waiting

    def _deferred(self) -> dict[str, _Deferred]:
        """This thread's deferred completions, those whose transaction rolled
        back forgotten."""
        found: dict[str, _Deferred] | None = getattr(self._local, "deferred", None)
        if found is None:
            found = self._local.deferred = {}
        for key in [key for key, waiting in found.items() if not waiting.pending()]:
            del found[key]
        return found

    def _deferred_outcome(self, key: str, record_id: str, version: int) -> StoredResponse | None:
        """The outcome this thread deferred for the record at ``version``, if
        its enclosing transaction may still commit."""
        waiting = self._deferred().get(key)
        if waiting is None or (waiting.record_id, waiting.version) != (record_id, version):
            return None
        return waiting.response

    def _end(self, handle: _Handle, rollback: bool = False) -> None:
        atomic, handle.atomic = handle.atomic, None
        if atomic is None:
            return
        try:
            leave(atomic, rollback)
        except (OperationalError, InterfaceError) as error:
            raise StoreUnavailableError(str(error)) from error

    # ------------------------------------------------------------ plumbing

    def _run(self, script: str, key: str, args: list[Any]) -> Any:
        if self.url is None:
            raise StoreMisconfiguredError(
                'IDEMPOTENCY["STORE"] is \'redis\' but IDEMPOTENCY["REDIS_URL"] is not set.'
            )
        errors = _redis_errors()
        try:
            # Inside: making the client fails too (no node of a cluster
            # reachable at startup).
            return connection(self.url, self.cluster).scripts[script](keys=[key], args=args)
        except errors as error:
            if not self.cluster and _redirected(error):
                # A cluster node answering for a slot it does not own: every
                # key of the other masters' slots would fail the same way.
                raise StoreMisconfiguredError(
                    'IDEMPOTENCY["REDIS_URL"] names a Redis Cluster node but '
                    'IDEMPOTENCY["REDIS_CLUSTER"] is False: set REDIS_CLUSTER to True '
                    "(manage.py check reports it as idempotency.E032)."
                ) from error
            # Unreachable, timed out, read-only after a failover, out of
            # memory, a cluster without a master for the slot: nobody can
            # tell who holds the key, so the call must not run.
            raise StoreUnavailableError(f"{type(error).__name__}: {error}") from error


def _redis_errors() -> tuple[type[Exception], ...]:
    """What redis-py raises when Redis cannot serve a script: RedisError, and
    the cluster client's errors, which do not derive from it. None when
    redis-py does not import: ``connection`` then says so (misconfigured)."""
    try:
        from redis.exceptions import RedisClusterException, RedisError
    except ImportError:
        return ()
    return (RedisError, RedisClusterException)


def _redirected(error: Exception) -> bool:
    """A cluster node's MOVED or ASK: the key's slot is another node's."""
    from redis.exceptions import AskError  # MovedError derives from it

    return isinstance(error, AskError)


def _refused(error: StoreUnavailableError, response: StoredResponse) -> bool:
    """Whether Redis refused this outcome rather than being out of reach: an
    error reply (out of memory, read-only), or a connection broken while a
    body was sent (Redis closes it on a body over proto-max-bulk-len). A
    timeout is not: a hung Redis is not waited on again."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ResponseError

    cause = error.__cause__
    if isinstance(cause, ResponseError):
        return True
    return isinstance(cause, RedisConnectionError) and response.body is not None


def _ms(duration: timedelta) -> int:
    return max(int(duration.total_seconds() * 1000), 1)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
