"""Record stores: where claims, stored responses and locks live.

The engine talks to a store only through ``RecordStore``; the database store
is the one that ships. ``get_store`` picks the store for the current settings.
"""

from __future__ import annotations

from idempotency.stores.base import (
    Attempt,
    Claim,
    ClaimOutcome,
    RecordStore,
    StoreContentionError,
    StoredResponse,
    StoreUnavailableError,
)

__all__ = [
    "Attempt",
    "Claim",
    "ClaimOutcome",
    "RecordStore",
    "StoreContentionError",
    "StoredResponse",
    "StoreUnavailableError",
    "get_store",
]


def get_store() -> RecordStore:
    from idempotency.conf import idempotency_settings
    from idempotency.stores.database import DatabaseRecordStore

    return DatabaseRecordStore(idempotency_settings.DATABASE)
