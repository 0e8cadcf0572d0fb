"""The path of one protected call through idempotency, written once.

    claim -> (wait while a duplicate runs) -> run -> finish (store + commit)
          \\-> replay | 422 | 409                  \\-> release (raised, rolled
                                                       back, or not kept)

A door (an HTTP view, sync or async; a function or task) builds the
``Attempt`` (key, scope, fingerprint), hands the engine a ``Door`` that says
what to keep of a result and how to replay a stored one, and drives
``protect`` with ``drive`` or ``adrive``. ``protect`` is a generator: it
yields the steps that do I/O (store calls, the call itself, a pause) and the
driver performs them, in this thread or, for async views, with the store
calls in a worker thread. So the rules exist once and the async path never
touches the ORM from the event loop. The engine raises ``Problem``; the doors
translate problems (a problem+json response, or an exception).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from django.dispatch import Signal

from idempotency import signals, turns
from idempotency.log import log
from idempotency.problems import (
    DurableBlockRefused,
    KeyReused,
    Misconfigured,
    RequestInProgress,
    RequestSuperseded,
    ResponseNotReplayable,
    StoreUnavailable,
)
from idempotency.stores import (
    Attempt,
    Claim,
    ClaimOutcome,
    RecordStore,
    StoreContentionError,
    StoredResponse,
    StoreMisconfiguredError,
    StoreUnavailableError,
)

Result = TypeVar("Result")

# Polling while a duplicate runs: the first pause, its growth, its cap.
FIRST_PAUSE = 0.05
PAUSE_GROWTH = 2.0
LONGEST_PAUSE = 1.0
# A waiting duplicate's last claim comes this long before the first's lock
# ends (a round trip and the clocks' reading, with room to spare).
LOCK_MARGIN = 0.1


class Door(Protocol[Result]):
    """What the engine needs from the door a call came through."""

    def keep(self, result: Result) -> StoredResponse | None:
        """What to store of ``result``, or ``None`` to release the key instead."""

    def replay(self, stored: StoredResponse) -> Result:
        """The result to give for a stored outcome (may raise a ``Problem``)."""

    def signal_arguments(self) -> dict[str, Any]:
        """Extra keyword arguments for the signals (``request=`` for views)."""


# ----------------------------------------------------------------- steps


@dataclass(frozen=True)
class Blocking:
    """Work that may touch the database: run in a thread under async."""

    function: Callable[..., Any]
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Run:
    """Call the protected view or function."""


@dataclass(frozen=True)
class Pause:
    seconds: float


Step = Blocking | Run | Pause
Steps = Generator[Step, Any, Result]


def protect(
    store: RecordStore, attempt: Attempt, door: Door[Result], wait: timedelta
) -> Steps[Result]:
    """The rules: run the call at most once per scope and key, or answer for it."""
    claim: Claim = yield Blocking(_claim, (store, attempt))
    deadline = time.monotonic() + wait.total_seconds()
    until = _waiting_until(deadline, claim)
    pause = FIRST_PAUSE
    while claim.outcome is ClaimOutcome.IN_PROGRESS and time.monotonic() < until:
        # Polling, not waiting on a lock: nothing is held meanwhile, so
        # PgBouncer's transaction pooling and Redis keep working. Full jitter
        # spreads a crowd of duplicates.
        yield Pause(min(random.uniform(0, pause), max(until - time.monotonic(), 0)))
        pause = min(pause * PAUSE_GROWTH, LONGEST_PAUSE)
        claim = yield Blocking(_claim, (store, attempt))
        until = _waiting_until(deadline, claim)
    if claim.outcome is not ClaimOutcome.ACQUIRED:
        answer: Result = yield Blocking(_answer, (claim, attempt, door))
        return answer
    try:
        if claim.taken_over:
            log(logging.WARNING, "Idempotency lock taken over", attempt)
            yield Blocking(_notify, (signals.lock_taken_over, attempt, door))
        result = yield Run()
    except BaseException as error:  # the call's, or a cancellation (adrive) at any step from here
        # One unit: a cancellation held while it runs is raised at the next
        # step, and there must be no next step before the release.
        durable = yield Blocking(_release_failed, (store, claim, attempt, door, error))
        if durable:
            raise DurableBlockRefused() from error
        raise
    finished: Result = yield Blocking(_finish, (store, claim, attempt, door, result))
    return finished


def _waiting_until(deadline: float, claim: Claim) -> float:
    """When a duplicate stops waiting: at its deadline, or just before the
    first request's lock runs out. A wait is for the first request's answer
    (contract section 11); a claim after the lock ran out would take the
    record over and run the call beside a first that may still be running."""
    if claim.lock_remaining is None:
        return deadline
    lock_ends = time.monotonic() + claim.lock_remaining.total_seconds()
    return min(deadline, lock_ends - LOCK_MARGIN)


def drive(steps: Steps[Result], call: Callable[[], Any]) -> Result:
    """Perform ``steps`` in this thread."""
    value: Any = None
    error: BaseException | None = None
    while True:
        step, done = _advance(steps, value, error)
        if step is None:
            return done.value  # type: ignore[union-attr, no-any-return]
        try:
            value, error = _perform(step, call), None
        except BaseException as raised:
            value, error = None, raised


async def adrive(steps: Steps[Result], call: Callable[[], Awaitable[Any]]) -> Result:
    """Perform ``steps`` under asyncio: store work in the request's worker
    thread (``thread_sensitive``, so every unit of one request shares one
    connection and its transaction), the call and the pauses on the loop.

    A request that shares its worker thread with others (under an outer
    ``async_to_sync``) takes turns on it with them, from its claim to its
    commit (``idempotency.turns``): no two share a transaction.

    A cancellation (Django cancels the view of a client that disconnected)
    that comes while a store unit runs is held until the unit ends, then
    raised at the next step: what the unit did (a key claimed, a transaction
    opened) is then undone by the release, as for any exception."""
    value: Any = None
    error: BaseException | None = None
    cancelled: asyncio.CancelledError | None = None
    with turns.request():
        while True:
            try:
                step, done = _advance(steps, value, error)
            except BaseException as ended:
                if cancelled is not None:  # the cancellation held during the last unit
                    raise cancelled from ended
                raise
            if step is None:
                if cancelled is not None:
                    raise cancelled
                return done.value  # type: ignore[union-attr, no-any-return]
            value, error = None, None
            if cancelled is not None:
                error, cancelled = cancelled, None
                continue
            try:
                if isinstance(step, Blocking):
                    value, cancelled = await turns.unit(step.function, *step.args)
                elif isinstance(step, Run):
                    value = await call()
                else:
                    await asyncio.sleep(step.seconds)
            except BaseException as raised:
                error = raised


def _advance(
    steps: Steps[Any], value: Any, error: BaseException | None
) -> tuple[Step | None, StopIteration | None]:
    """The next step, or the StopIteration that carries the result."""
    try:
        return (steps.throw(error) if error is not None else steps.send(value)), None
    except StopIteration as done:
        return None, done


def _perform(step: Step, call: Callable[[], Any]) -> Any:
    if isinstance(step, Blocking):
        return step.function(*step.args)
    if isinstance(step, Run):
        return call()
    time.sleep(step.seconds)
    return None


# ------------------------------------------------------ blocking units


def _claim(store: RecordStore, attempt: Attempt) -> Claim:
    try:
        claim = store.claim(attempt)
    except StoreContentionError as error:
        # Deadlocks and lock timeouts on the claim come from duplicates of this
        # request racing for the same key; the answer to a duplicate is 409.
        log(logging.INFO, "Idempotency claim hit a lock conflict: %s", attempt, error)
        return Claim(ClaimOutcome.IN_PROGRESS)
    except StoreUnavailableError as error:
        log(logging.ERROR, "Idempotency store unavailable; refusing: %s", attempt, error)
        raise StoreUnavailable() from error
    except StoreMisconfiguredError as error:
        log(logging.ERROR, "Idempotency store misconfigured: %s", attempt, error)
        raise Misconfigured() from error
    if claim.outcome is ClaimOutcome.ACQUIRED:
        turns.hold(claim)  # until _finish or _release lets go
    return claim


def _release_failed(
    store: RecordStore, claim: Claim, attempt: Attempt, door: Door[Any], error: BaseException
) -> bool:
    """Release the key of a call that raised ``error``; whether it failed
    because its durable atomic block cannot open in the store's transaction
    (docs/transactions.md, ``atomic=False``)."""
    try:
        # Asked before the release ends the store's transaction.
        refused = store.refused_durable_block(claim, error)
    finally:
        _release(store, claim, attempt, door)
    if not refused:
        return False
    log(logging.ERROR, "Idempotency refused the call: it opens a durable atomic block inside "
        "the package's transaction; declare the view @idempotent(atomic=False) "
        "(idempotency_atomic = False on the mixin). The key was released", attempt,
        exc_info=error)  # fmt: skip
    return True


def _answer(claim: Claim, attempt: Attempt, door: Door[Result]) -> Result:
    """The answer for a key that this call did not acquire."""
    if claim.outcome is ClaimOutcome.MISMATCH:
        log(logging.INFO, "Idempotency key reused with another request", attempt)
        _notify(signals.key_reused, attempt, door)
        raise KeyReused()
    if claim.outcome is ClaimOutcome.IN_PROGRESS:
        log(logging.INFO, "Idempotency key in progress", attempt)
        _notify(signals.request_in_progress, attempt, door)
        problem = RequestInProgress()
        problem.lock_remaining = claim.lock_remaining
        raise problem
    stored = claim.response
    if stored is None or stored.body is None:
        raise ResponseNotReplayable()
    replayed = door.replay(stored)
    log(logging.INFO, "Idempotency replay", attempt)
    _notify(signals.response_replayed, attempt, door, status=stored.status)
    return replayed


def _finish(
    store: RecordStore, claim: Claim, attempt: Attempt, door: Door[Result], result: Result
) -> Result:
    """Keep the outcome with the call's writes, or release the key."""
    try:
        stored = None if store.rollback_requested(claim) else door.keep(result)
        if stored is None:
            _release(store, claim, attempt, door)
            return result
        if stored.body is None:
            log(logging.WARNING, "Idempotency response not stored (streamed or larger than "
                "MAX_STORED_RESPONSE_BYTES); retries will get 410", attempt)  # fmt: skip
        kept = store.finish(
            claim,
            stored,
            lambda: _notify(
                signals.response_stored,
                attempt,
                door,
                status=stored.status,
                replayable=stored.body is not None,
            ),  # fmt: skip
        )
    except StoreContentionError as error:
        _release(store, claim, attempt, door)
        raise RequestInProgress(RequestInProgress.contended) from error
    except StoreUnavailableError as error:
        _release(store, claim, attempt, door)
        raise StoreUnavailable(StoreUnavailable.while_storing) from error
    except BaseException:
        _release(store, claim, attempt, door)
        raise
    finally:
        turns.let_go(claim)  # committed or rolled back: the thread is free
    if not kept:
        log(logging.WARNING, "Idempotency lock lost, rolled back", attempt)
        raise RequestSuperseded()
    return result


def _release(store: RecordStore, claim: Claim, attempt: Attempt, door: Door[Any]) -> None:
    # Best effort: if the store is down too, the lock expires after
    # LOCK_TIMEOUT and a retry takes the record over.
    try:
        released = store.release(claim)
    except (StoreUnavailableError, StoreContentionError) as error:
        log(logging.ERROR, "Idempotency release failed: %s", attempt, error)
        return
    finally:
        turns.let_go(claim)
    if released:
        log(logging.INFO, "Idempotency record released", attempt)
        _notify(signals.record_released, attempt, door)


def _notify(signal: Signal, attempt: Attempt, door: Door[Any], **extra: object) -> None:
    if not signal.receivers:
        return  # what send_robust answers with no receivers, without building its arguments
    # Imported here: ``idempotency.idempotent`` must be importable before the
    # app registry is ready (decorators run at URLconf import time).
    from idempotency.models import IdempotencyRecord

    results = signal.send_robust(
        sender=IdempotencyRecord,
        scope=attempt.scope,
        key=attempt.key,
        **door.signal_arguments(),
        **extra,
    )
    for receiver, result in results:
        if isinstance(result, Exception):
            log(logging.ERROR, "Idempotency signal receiver %r failed", attempt, receiver,
                exc_info=result)  # fmt: skip
