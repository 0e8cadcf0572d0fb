"""Record stores: where claims, stored outcomes and locks live.

The engine talks to a store only through ``RecordStore``. ``get_store`` picks
the store the settings name (``STORE``), for the current settings.
"""

from __future__ import annotations

from idempotency.stores.base import (
    Attempt,
    Claim,
    ClaimOutcome,
    RecordStore,
    StoreContentionError,
    StoredResponse,
    StoreMisconfiguredError,
    StoreUnavailableError,
)

__all__ = [
    "Attempt",
    "Claim",
    "ClaimOutcome",
    "RecordStore",
    "StoreContentionError",
    "StoredResponse",
    "StoreMisconfiguredError",
    "StoreUnavailableError",
    "get_store",
]


_stores: dict[str, RecordStore] = {}


def get_store() -> RecordStore:
    """The store the settings name, one per database alias (or Redis URL)
    and process: its SQL is built once, and it holds no connection (each use
    takes the thread's, or the process's Redis pool)."""
    from idempotency.conf import idempotency_settings

    if idempotency_settings.STORE == "redis":
        return _redis_store(
            idempotency_settings.REDIS_URL,
            idempotency_settings.REDIS_CLUSTER,
            idempotency_settings.REDIS_PREFIX,
        )
    alias = idempotency_settings.DATABASE
    store = _stores.get(alias)
    if store is None:
        store = _stores[alias] = _database_store(alias)
    return store


def _redis_store(url: str | None, cluster: bool, prefix: str) -> RecordStore:
    # Holds no connection: the pool is per process, made on first use
    # (idempotency.stores.redis), so a store made before a fork is safe.
    from idempotency.stores.redis import RedisRecordStore

    name = f"redis {url} {cluster} {prefix}"
    store = _stores.get(name)
    if store is None:
        store = _stores[name] = RedisRecordStore(url, cluster, prefix)
    return store


def _database_store(alias: str) -> RecordStore:
    from django.db import connections

    if connections[alias].vendor == "postgresql" and _is_psycopg3():
        from idempotency.stores.postgresql import PostgresRecordStore

        return PostgresRecordStore(alias)
    from idempotency.stores.database import DatabaseRecordStore

    return DatabaseRecordStore(alias)


def _is_psycopg3() -> bool:
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return bool(is_psycopg3)
