"""The Redis store (contract section 6): what ``STORE = "redis"`` needs.

Only ``check_redis_server`` connects, once, with timeouts of its own (about a
second, whatever REDIS_URL says), to read the eviction policy and the cluster
mode; it says nothing when it cannot ask (Redis down, or CONFIG or INFO
disabled, as on many managed services), and W011 when Redis does not answer.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from django.core.checks import CheckMessage

from idempotency.checks.messages import guarded, message, setting
from idempotency.checks.rules import valid
from idempotency.validation import quote
from idempotency.validation.redis import client_options, client_options_refused, shown_url


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


@guarded('IDEMPOTENCY["REDIS_URL"]')
def check_redis_url_options(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not _url_to_ask():
        return []
    refused = client_options_refused(setting("REDIS_URL"), bool(setting("REDIS_CLUSTER")))
    if refused is None:
        return []
    return [
        message(
            "idempotency.E031",
            f'redis-py refuses IDEMPOTENCY["REDIS_URL"] {quote(shown_url(setting("REDIS_URL")))} '
            f"({refused}): correct that part of the URL, such as "
            '"redis://localhost:6379/0?socket_timeout=2" for a query option.',
            hint="The store makes its client from this URL on the first request: every "
            "idempotent request would fail with 500 misconfigured.",
        )
    ]


# Policies under which Redis removes keys that have an expiry, and every
# record has one: an evicted record lets a duplicate run again.
EVICTING_POLICIES = frozenset({
    "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
    "allkeys-lru", "allkeys-lfu", "allkeys-random",
})  # fmt: skip
# The check runs with every manage.py command and runserver start: it waits
# about this long to connect, then as long for an answer, whatever
# REDIS_URL's query string says (?socket_timeout=60 is for the store).
CHECK_TIMEOUT = 1.0


@dataclass(frozen=True)
class _Answers:
    """What the Redis at REDIS_URL told the check (``None``: not told)."""

    policy: str | None = None
    cluster_enabled: bool | None = None
    timed_out: bool = False


@guarded('IDEMPOTENCY["REDIS_URL"]')
def check_redis_server(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not _url_to_ask() or check_redis_url_options():
        return []
    answers = _ask(setting("REDIS_URL"))
    return [*_timed_out(answers), *_eviction(answers), *_cluster_mode(answers)]


def _timed_out(answers: _Answers) -> list[CheckMessage]:
    if not answers.timed_out:
        return []
    return [
        message(
            "idempotency.W011",
            f'The Redis at IDEMPOTENCY["REDIS_URL"] did not answer within {CHECK_TIMEOUT:g} s, '
            "so its maxmemory-policy (W008) and cluster mode (E032) could not be read: check "
            "that this Redis is up and answering, then run the checks again.",
            hint="A Redis that accepts connections but does not answer costs every idempotent "
            "request its socket_timeout, then a 503.",
        )
    ]


def _eviction(answers: _Answers) -> list[CheckMessage]:
    if answers.policy not in EVICTING_POLICIES:
        return []
    return [
        message(
            "idempotency.W008",
            f'The Redis at IDEMPOTENCY["REDIS_URL"] has maxmemory-policy {quote(answers.policy)}, '
            "which evicts idempotency records under memory pressure: set maxmemory-policy "
            "noeviction on that Redis, or give the records a Redis of their own.",
            hint="An evicted record is a key never seen: its retry runs the operation again. "
            "With noeviction a full Redis refuses new claims (503) instead.",
        )
    ]


def _cluster_mode(answers: _Answers) -> list[CheckMessage]:
    cluster = setting("REDIS_CLUSTER")
    if answers.cluster_enabled is None or answers.cluster_enabled == cluster:
        return []
    found = "a Redis Cluster node" if answers.cluster_enabled else "not a Redis Cluster node"
    return [
        message(
            "idempotency.E032",
            f'IDEMPOTENCY["REDIS_CLUSTER"] is {quote(cluster)} but the Redis at '
            f'IDEMPOTENCY["REDIS_URL"] is {found} (INFO cluster says cluster_enabled:'
            f"{int(answers.cluster_enabled)}): set REDIS_CLUSTER to {not cluster}.",
            hint="A cluster node answers MOVED for every key in another node's slots, so "
            "without REDIS_CLUSTER most requests fail with 503; with REDIS_CLUSTER a Redis "
            "that is no cluster node refuses the client, and every request fails.",
        )
    ]


def _url_to_ask() -> bool:
    return (
        uses_redis() and valid("REDIS_URL") and valid("REDIS_CLUSTER")
        and setting("REDIS_URL") is not None and _imports_redis()
    )  # fmt: skip


def _imports_redis() -> bool:
    try:
        importlib.import_module("redis")
    except Exception:  # E028 says so
        return False
    return True


def _ask(url: str) -> _Answers:
    """One connection, with the check's own timeouts and no retry; every
    question after a timeout is skipped (a hung Redis is waited on once)."""
    from redis import Redis
    from redis.backoff import NoBackoff
    from redis.connection import ConnectionPool
    from redis.exceptions import ResponseError, TimeoutError
    from redis.retry import Retry

    options = {
        **client_options(url),
        "socket_connect_timeout": CHECK_TIMEOUT, "socket_timeout": CHECK_TIMEOUT,
        "decode_responses": False, "retry_on_timeout": False, "retry_on_error": [],
        "retry": Retry(NoBackoff(), 0),
    }  # fmt: skip
    client = Redis(connection_pool=ConnectionPool(**options))
    policy: Any = None
    try:
        try:
            found = client.config_get("maxmemory-policy")
            policy = found.get("maxmemory-policy") if isinstance(found, dict) else None
        except ResponseError:  # CONFIG renamed or refused, as on many managed services
            pass
        try:
            enabled = client.info("cluster").get("cluster_enabled")
        except ResponseError:  # INFO renamed or refused
            enabled = None
    except TimeoutError:
        return _Answers(timed_out=True)
    except Exception:  # unreachable, refused: nothing to tell
        return _Answers()
    finally:
        client.close()
    return _Answers(
        policy.decode() if isinstance(policy, bytes) else policy,
        None if enabled is None else bool(int(enabled)),
    )


CHECKS = (
    check_redis_url_is_set,
    check_redis_package,
    check_redis_url_options,
    check_redis_server,
)
