"""The Redis store (contract section 6): what ``STORE = "redis"`` needs.

Only the eviction check connects, briefly, and says nothing when it cannot
ask (Redis down, or CONFIG disabled, as on many managed services).
"""

from __future__ import annotations

import importlib
from typing import Any

from django.core.checks import CheckMessage

from idempotency.checks.messages import guarded, message, setting
from idempotency.checks.rules import valid
from idempotency.validation import quote


def uses_redis() -> bool:
    return valid("STORE") and setting("STORE") == "redis"


@guarded('IDEMPOTENCY["REDIS_URL"]')
def check_redis_url_is_set(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not uses_redis() or setting("REDIS_URL") is not None:
        return []
    return [
        message(
            "idempotency.E027",
            'IDEMPOTENCY["STORE"] is \'redis\' but IDEMPOTENCY["REDIS_URL"] is not set: set it '
            'to the URL of the Redis that holds the records, such as "redis://localhost:6379/0".',
            hint="There is no default Redis: records would have nowhere to go, and every "
            "idempotent request would fail.",
        )
    ]


@guarded('IDEMPOTENCY["STORE"]')
def check_redis_package(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not uses_redis():
        return []
    try:
        # Imported as the store will import it, so a broken install shows here too.
        importlib.import_module("redis")
    except Exception as error:
        return [
            message(
                "idempotency.E028",
                "IDEMPOTENCY[\"STORE\"] is 'redis' but the redis package does not import "
                f"({quote(error)}): install it with pip install 'django-idempotency[redis]'.",
                hint="pip install 'django-idempotency[redis]' installs redis-py, the client "
                "the Redis store talks through.",
            )
        ]
    return []


# Policies under which Redis removes keys that have an expiry, and every
# record has one: an evicted record lets a duplicate run again.
EVICTING_POLICIES = frozenset({
    "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
    "allkeys-lru", "allkeys-lfu", "allkeys-random",
})  # fmt: skip
# The check runs with every manage.py command: it never waits long.
CHECK_TIMEOUT = 0.5


@guarded('IDEMPOTENCY["REDIS_URL"]')
def check_redis_eviction_policy(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    url = setting("REDIS_URL")
    if not uses_redis() or not valid("REDIS_URL") or url is None:
        return []
    policy = _eviction_policy(url)
    if policy not in EVICTING_POLICIES:
        return []
    return [
        message(
            "idempotency.W008",
            f'The Redis at IDEMPOTENCY["REDIS_URL"] has maxmemory-policy {quote(policy)}, which '
            "evicts idempotency records under memory pressure: set maxmemory-policy noeviction "
            "on that Redis, or give the records a Redis of their own.",
            hint="An evicted record is a key never seen: its retry runs the operation again. "
            "With noeviction a full Redis refuses new claims (503) instead.",
        )
    ]


def _eviction_policy(url: str) -> str | None:
    try:
        from redis import Redis

        client = Redis.from_url(
            url, socket_connect_timeout=CHECK_TIMEOUT, socket_timeout=CHECK_TIMEOUT
        )
        try:
            found = client.config_get("maxmemory-policy")
        finally:
            client.close()
    except Exception:  # unreachable, CONFIG renamed or refused: nothing to tell
        return None
    policy = found.get("maxmemory-policy") if isinstance(found, dict) else None
    return policy.decode() if isinstance(policy, bytes) else policy


CHECKS = (check_redis_url_is_set, check_redis_package, check_redis_eviction_policy)
