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
from idempotency.stores.base import StoreMisconfiguredError

# A hung Redis costs a request at most about CONNECT + SOCKET seconds, then
# 503; ``socket_timeout=`` and friends in REDIS_URL's query string override.
CONNECT_TIMEOUT = 1.0
SOCKET_TIMEOUT = 2.0
SCRIPTS = ("CLAIM", "CONFIRM", "COMPLETE", "RELEASE")


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
        from redis.retry import Retry
    except ImportError as error:
        raise StoreMisconfiguredError(
            "IDEMPOTENCY[\"STORE\"] is 'redis' but the redis package does not import "
            f"({error}): install it with pip install 'django-idempotency[redis]'."
        ) from error
    options: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": SOCKET_TIMEOUT,
    }
    if cluster:
        return RedisCluster.from_url(url, **options)
    # One immediate retry on a broken connection (a pooled socket that a
    # restarted Redis closed), never on a timeout: a hung Redis is not
    # waited on twice. Every script is safe to send again.
    retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
    return Redis.from_url(url, retry=retry, **options)
