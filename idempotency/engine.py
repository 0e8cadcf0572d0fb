"""The request's path through idempotency, in one place.

    key -> scope -> fingerprint -> claim -> (view + complete) | release
                                       \\-> replay | 422 | 409

The adapters (``decorators``, ``drf``) gather options and call ``run``; the
engine raises ``Problem`` for every refusal and the adapters render it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.dispatch import Signal
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from idempotency import signals
from idempotency.conf import RequestFunction, as_timedelta, idempotency_settings
from idempotency.fields import KEY_LENGTH
from idempotency.fingerprint import compute_fingerprint
from idempotency.keys import parse_key
from idempotency.problems import (
    KeyMissing,
    KeyReused,
    RequestInProgress,
    RequestSuperseded,
    ResponseNotReplayable,
    StoreUnavailable,
)
from idempotency.responses import capture, is_released, replay
from idempotency.scope import resolve_scope
from idempotency.stores import (
    Attempt,
    Claim,
    ClaimOutcome,
    RecordStore,
    StoreContentionError,
    StoreUnavailableError,
    get_store,
)

logger = logging.getLogger("idempotency")

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

CallView = Callable[[], HttpResponseBase]


@dataclass(frozen=True)
class ViewOptions:
    """Per-view overrides; ``None`` means "ask the settings now"."""

    scope: str | RequestFunction | None = None
    required: bool | None = None
    ttl: timedelta | float | None = None
    methods: frozenset[str] = UNSAFE_METHODS


class _Discard(Exception):
    """Leaves the view's transaction with a rollback, carrying the response."""

    def __init__(self, response: HttpResponseBase) -> None:
        self.response = response


def run(request: HttpRequest, call_view: CallView, options: ViewOptions) -> HttpResponseBase:
    """Answer ``request``, running ``call_view`` at most once per scope and key.

    ``request`` may be DRF's ``Request``; adapters call this after DRF has
    authenticated it, so the scope is the authenticated caller's.
    """
    if (request.method or "").upper() not in options.methods:
        return call_view()
    raw_key = request.headers.get(idempotency_settings.HEADER)
    if raw_key is None:
        if _required(options):
            raise KeyMissing(
                f"This endpoint requires an {idempotency_settings.HEADER} header; "
                "send a new unique value (a UUID) for each operation."
            )
        return call_view()
    # A KEY_MAX_LENGTH above the column's length cannot be honoured: such keys
    # are refused as too long rather than truncated.
    key = parse_key(raw_key, min(idempotency_settings.KEY_MAX_LENGTH, KEY_LENGTH))
    scope = resolve_scope(request, options.scope or idempotency_settings.SCOPE)
    attempt = Attempt(
        scope=scope,
        key=key,
        fingerprint=compute_fingerprint(request, idempotency_settings.FINGERPRINT),
        method=request.method or "",
        path=request.get_full_path(),
        ttl=as_timedelta(options.ttl) if options.ttl is not None else idempotency_settings.TTL,
        lock_for=idempotency_settings.LOCK_TIMEOUT,
    )
    store = get_store()
    claim = _claim(store, attempt)
    if claim.outcome is ClaimOutcome.ACQUIRED:
        return _execute(store, claim, request, attempt, call_view)
    return _answer(claim, request, attempt)


def _required(options: ViewOptions) -> bool:
    return idempotency_settings.REQUIRED if options.required is None else options.required


def _claim(store: RecordStore, attempt: Attempt) -> Claim:
    try:
        return store.claim(attempt)
    except StoreContentionError as error:
        # Deadlocks and lock timeouts on the claim come from duplicates of this
        # request racing for the same key; the answer to a duplicate is 409.
        logger.info("Idempotency claim hit a lock conflict scope=%s key=%s: %s",
                    attempt.scope, attempt.key, error)  # fmt: skip
        return Claim(ClaimOutcome.IN_PROGRESS)
    except StoreUnavailableError as error:
        logger.error(
            "Idempotency store unavailable; refusing scope=%s key=%s: %s",
            attempt.scope, attempt.key, error,
        )  # fmt: skip
        raise StoreUnavailable(
            "The idempotency record store cannot be reached; the request was not run. "
            "Retry with the same key."
        ) from error


def _answer(claim: Claim, request: HttpRequest, attempt: Attempt) -> HttpResponseBase:
    """The answer for a key that this request did not acquire."""
    if claim.outcome is ClaimOutcome.MISMATCH:
        logger.info("Idempotency key reused with another request scope=%s key=%s",
                    attempt.scope, attempt.key)  # fmt: skip
        _notify(signals.key_reused, request, attempt)
        raise KeyReused(
            "This idempotency key was used for a request with a different method, "
            "path or body; use a new key for a new operation."
        )
    if claim.outcome is ClaimOutcome.IN_PROGRESS:
        logger.info("Idempotency key in progress scope=%s key=%s", attempt.scope, attempt.key)
        _notify(signals.request_in_progress, request, attempt)
        raise RequestInProgress(
            "A request with this idempotency key is still being processed; "
            "retry after the time in Retry-After."
        )
    stored = claim.response
    if stored is None or stored.body is None:
        raise ResponseNotReplayable(
            "The request with this idempotency key was executed, but its response "
            "was streamed or too large to store, so it cannot be replayed."
        )
    logger.info("Idempotency replay scope=%s key=%s", attempt.scope, attempt.key)
    _notify(signals.response_replayed, request, attempt, status=stored.status)
    return replay(stored)


def _execute(
    store: RecordStore, claim: Claim, request: HttpRequest, attempt: Attempt, call_view: CallView
) -> HttpResponseBase:
    """Run the view; its writes and the stored response commit together."""
    if claim.taken_over:
        logger.warning("Idempotency lock taken over scope=%s key=%s", attempt.scope, attempt.key)
        _notify(signals.lock_taken_over, request, attempt)
    try:
        with store.transaction():
            response = call_view()
            if is_released(response.status_code, idempotency_settings.RELEASE_STATUSES):
                raise _Discard(response)
            stored = capture(
                response,
                idempotency_settings.REPLAY_HEADERS,
                idempotency_settings.MAX_STORED_RESPONSE_BYTES,
            )
            if stored.body is None:
                logger.warning(
                    "Idempotency response not stored (streamed or larger than "
                    "MAX_STORED_RESPONSE_BYTES); retries will get 410 scope=%s key=%s",
                    attempt.scope, attempt.key,
                )  # fmt: skip
            if not store.complete(claim, stored):
                raise RequestSuperseded(
                    "This request's lock expired and another request with the same "
                    "idempotency key took over; this one was rolled back."
                )
            store.on_commit(
                lambda: _notify(
                    signals.response_stored,
                    request,
                    attempt,
                    status=stored.status,
                    replayable=stored.body is not None,
                )  # fmt: skip
            )
    except _Discard as discard:
        _release(store, claim, request, attempt)
        return discard.response
    except RequestSuperseded:
        logger.warning("Idempotency lock lost, rolled back scope=%s key=%s",
                       attempt.scope, attempt.key)  # fmt: skip
        raise
    except StoreContentionError as error:
        _release(store, claim, request, attempt)
        raise RequestInProgress(
            "A concurrent request with this idempotency key held a lock this one "
            "needed; it was rolled back. Retry with the same key."
        ) from error
    except StoreUnavailableError as error:
        _release(store, claim, request, attempt)
        raise StoreUnavailable(
            "The idempotency record store failed while storing the response; the "
            "request was rolled back. Retry with the same key."
        ) from error
    except BaseException:
        _release(store, claim, request, attempt)
        raise
    return response


def _release(store: RecordStore, claim: Claim, request: HttpRequest, attempt: Attempt) -> None:
    # Best effort: if the store is down too, the lock expires after
    # LOCK_TIMEOUT and a retry takes the record over.
    try:
        released = store.release(claim)
    except (StoreUnavailableError, StoreContentionError) as error:
        logger.error("Idempotency release failed scope=%s key=%s: %s",
                     attempt.scope, attempt.key, error)  # fmt: skip
        return
    if released:
        logger.info("Idempotency record released scope=%s key=%s", attempt.scope, attempt.key)
        _notify(signals.record_released, request, attempt)


def _notify(signal: Signal, request: HttpRequest, attempt: Attempt, **extra: object) -> None:
    # Imported here: ``idempotency.idempotent`` must be importable before the
    # app registry is ready (decorators run at URLconf import time).
    from idempotency.models import IdempotencyRecord

    results = signal.send_robust(
        sender=IdempotencyRecord, request=request, scope=attempt.scope, key=attempt.key, **extra
    )
    for receiver, result in results:
        if isinstance(result, Exception):
            logger.error(
                "Idempotency signal receiver %r failed scope=%s key=%s",
                receiver, attempt.scope, attempt.key, exc_info=result,
            )  # fmt: skip
