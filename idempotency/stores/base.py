"""The record store interface: facts in, facts out, no HTTP.

A store decides who runs (``claim``), keeps the outcome (``finish``) or
forgets the claim (``release``), every write fenced by the record's version.
It also owns the transaction the protected call runs in, because only the
store knows whether the call's writes and the stored outcome can commit
together (the database store) or not (Redis).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol


@dataclass(frozen=True)
class StoredResponse:
    """What is kept of an outcome: an HTTP response, or a function's JSON result."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    # None: the call completed but its outcome was not kept (streamed, a file,
    # or larger than MAX_STORED_RESPONSE_BYTES), so it cannot be replayed.
    body: bytes | None = None
    # True: ``headers`` is empty and ``body`` is a sealed envelope
    # (idempotency.crypto) that only the idempotency key opens.
    sensitive: bool = False


class ClaimOutcome(enum.Enum):
    ACQUIRED = "acquired"  # this call owns the record and runs
    REPLAY = "replay"  # completed earlier with the same fingerprint
    MISMATCH = "mismatch"  # the key belongs to another request or principal
    IN_PROGRESS = "in_progress"  # the same request is running elsewhere


@dataclass(frozen=True)
class Attempt:
    """What a call asks of the store when it claims a key."""

    scope: str
    # keys.digest(key): the store never sees the key itself.
    key: str
    fingerprint: str
    method: str
    path: str
    ttl: timedelta
    lock_for: timedelta
    # False: the call owns its transactions; its writes and the stored
    # outcome commit separately (docs/transactions.md).
    atomic: bool = True
    # The key's digests under SECRET_KEY_FALLBACKS: a record written before a
    # secret rotation is found under one of them.
    previous_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    record_id: int | str | None = None
    # The fencing token: every later write of this claim's owner is
    # conditional on the record still being at this version.
    version: int = 0
    response: StoredResponse | None = None
    taken_over: bool = False
    # IN_PROGRESS: how long the holder's lock still runs, when the store knows.
    lock_remaining: timedelta | None = None
    # ACQUIRED: the store's handle on the transaction the call runs in.
    transaction: object = None


class StoreUnavailableError(Exception):
    """The store cannot be reached; the call must not run unprotected."""


class StoreContentionError(Exception):
    """Another request holds what this one needs (a deadlock, a lock wait that
    timed out, a serialization failure): the same key is being worked on."""


class StoreMisconfiguredError(Exception):
    """The store cannot work as deployed (its table is missing): loud, never an outage."""


class RecordStore(Protocol):
    def claim(self, attempt: Attempt) -> Claim:
        """Insert-or-conflict: acquire the key or report who holds it.

        An ACQUIRED claim comes with the call's transaction open (unless
        ``attempt.atomic`` is False); any other outcome leaves nothing open.
        """

    def finish(self, claim: Claim, response: StoredResponse, on_commit: Callable[[], None]) -> bool:
        """Store the outcome and commit the call's transaction with it.

        ``False`` when another writer took the record over (the call's
        transaction is then rolled back). ``on_commit`` runs once the outcome
        is committed. A failed commit raises StoreUnavailableError or
        StoreContentionError after rolling back; the call's own errors (a
        deferred constraint) propagate unchanged.
        """

    def release(self, claim: Claim) -> bool:
        """Roll the call's transaction back and forget the claim, so a retry runs
        again; ``False`` if the record was lost to another writer meanwhile."""

    def rollback_requested(self, claim: Claim) -> bool:
        """Whether the call marked its transaction for rollback
        (``transaction.set_rollback(True)``): its outcome must not be kept."""

    def refused_durable_block(self, claim: Claim, error: BaseException) -> bool:
        """Whether ``error`` (the call's, its transaction still open) is Django
        refusing a durable atomic block because the store's own transaction
        encloses it: the call must own its transactions (``atomic=False``)."""
