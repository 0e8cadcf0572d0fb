"""The Redis store's connections: one client per URL and process, made on first use.

Timeouts are set so that a hung Redis costs a request a bounded time, then
503; every script is registered once per client (EVALSHA, loaded again by
redis-py when a restarted Redis has forgotten it).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from idempotency.stores import redis_scripts
from idempotency.stores.base import StoreMisconfiguredError, StoreUnavailableError
from idempotency.validation.redis import client_options_refused, without_query_options

# A hung Redis costs a request at most about CONNECT + SOCKET seconds, then
# 503; ``socket_timeout=`` and friends in REDIS_URL's query string override.
CONNECT_TIMEOUT = 1.0
SOCKET_TIMEOUT = 2.0
SCRIPTS = ("CLAIM", "CONFIRM", "COMPLETE", "RELEASE")
# The store reads the scripts' replies as bytes (a stored body is bytes, and
# need not be UTF-8): REDIS_URL's ?decode_responses= must not change them.
FORCED = {"decode_responses": False}


class _Connection:
    """A client and its registered scripts, for one process."""

    def __init__(self, url: str, cluster: bool) -> None:
        self.pid = os.getpid()
        self.client = _client(url, cluster)
        self.scripts = {
            name: self.client.register_script(getattr(redis_scripts, name)) for name in SCRIPTS
        }


_connections: dict[tuple[str, bool], _Connection] = {}
_connections_lock = threading.Lock()


def connection(url: str, cluster: bool) -> _Connection:
    """One client (and its pool) per URL and process, made on first use.

    A pool inherited through fork (gunicorn's preload) shares sockets with
    the parent: a new process gets a pool of its own.
    """
    found = _connections.get((url, cluster))
    if found is not None and found.pid == os.getpid():
        return found
    with _connections_lock:
        found = _connections.get((url, cluster))
        if found is None or found.pid != os.getpid():
            found = _connections[(url, cluster)] = _Connection(url, cluster)
        return found


def _client(url: str, cluster: bool) -> Any:
    try:
        from redis import Redis
        from redis.backoff import NoBackoff
        from redis.cluster import RedisCluster
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import RedisClusterException, RedisError
        from redis.retry import Retry
    except ImportError as error:
        raise StoreMisconfiguredError(
            "IDEMPOTENCY[\"STORE\"] is 'redis' but the redis package does not import "
            f"({error}): install it with pip install 'django-idempotency[redis]'."
        ) from error
    refused = client_options_refused(url, cluster)
    if refused is not None:
        raise StoreMisconfiguredError(
            f'redis-py refuses IDEMPOTENCY["REDIS_URL"] ({refused}): correct that part of '
            "the URL (manage.py check reports it as idempotency.E031)."
        )
    options: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": SOCKET_TIMEOUT,
        **FORCED,
    }
    # from_url() lets the query string win over keyword arguments: the
    # forced options are taken out of the URL so that ours apply.
    url = without_query_options(url, frozenset(FORCED))
    if cluster:
        try:
            # Connects, to learn the slots: a cluster it cannot reach, or a
            # Redis that is not a cluster node, raises (a RedisClusterException,
            # which is no RedisError): 503, as any Redis that cannot answer.
            return RedisCluster.from_url(url, **options)
        except (RedisClusterException, RedisError) as error:
            raise StoreUnavailableError(f"{type(error).__name__}: {error}") from error
    # One immediate retry on a broken connection (a pooled socket that a
    # restarted Redis closed), never on a timeout: a hung Redis is not
    # waited on twice. Every script is safe to send again.
    retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
    return Redis.from_url(url, retry=retry, **options)
