"""The record store interface: facts in, facts out, no HTTP."""

from __future__ import annotations

import enum
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol


@dataclass(frozen=True)
class StoredResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    # None: the request completed but its response was not kept (streamed,
    # a file, or larger than MAX_STORED_RESPONSE_BYTES), so it cannot be replayed.
    body: bytes | None = None


class ClaimOutcome(enum.Enum):
    ACQUIRED = "acquired"  # this request owns the record and runs the view
    REPLAY = "replay"  # completed earlier with the same fingerprint
    MISMATCH = "mismatch"  # the key belongs to a request with another fingerprint
    IN_PROGRESS = "in_progress"  # the same request is running elsewhere


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    record_id: int | None = None
    # The fencing token: every later write of this claim's owner is
    # conditional on the record still being at this version.
    version: int = 0
    response: StoredResponse | None = None
    taken_over: bool = False


@dataclass(frozen=True)
class Attempt:
    """What a request asks of the store when it claims a key."""

    scope: str
    key: str
    fingerprint: str
    method: str
    path: str
    ttl: timedelta
    lock_for: timedelta


class StoreUnavailableError(Exception):
    """The store cannot be reached; the request must not run unprotected."""


class StoreContentionError(Exception):
    """Another request holds what this one needs (a deadlock, a lock wait that
    timed out, a serialization failure): the same key is being worked on."""


class RecordStore(Protocol):
    def claim(self, attempt: Attempt) -> Claim:
        """Insert-or-conflict: acquire the key or report who holds it."""

    def complete(self, claim: Claim, response: StoredResponse) -> bool:
        """Store the response; ``False`` when another writer holds the record."""

    def release(self, claim: Claim) -> bool:
        """Forget the claim so a retry runs again; ``False`` if it was lost."""

    def transaction(self) -> AbstractContextManager[object]:
        """The transaction the view runs in, committed with ``complete``."""

    def on_commit(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` once what ``transaction()`` wrote is committed."""
