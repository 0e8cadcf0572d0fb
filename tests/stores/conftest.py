"""The record stores under one suite: every test here runs on each of them.

``record_store`` selects a store through the settings (``STORE``, as a user
would) and gives the test a ``Backend``: the few things a test must do to a
record behind the store's back (time as data: a lock that ran out, a record
past its expiry) and read of it. Redis tests use the shared server at
127.0.0.1:6379 with a prefix of their own, and delete only their own keys.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from idempotency.keys import digest
from idempotency.models import IdempotencyRecord
from idempotency.stores.redis import record_key
from tests.redis_servers import RedisCluster, redis_cluster
from tests.test_store import set_time

# Figures the Redis tests measured, printed at the end of the run.
TALLIES: list[str] = []

REDIS_URL = os.environ.get("IDEMPOTENCY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TALLIES:
        terminalreporter.section("Redis store figures")
        for line in TALLIES:
            terminalreporter.write_line(line)


@dataclass
class Backend:
    name: str
    client: Any = None  # redis-py, for the Redis stores
    prefix: str = ""

    def state(self, key: str, scope: str = "anonymous") -> tuple[str, int] | None:
        """(status, version) of the record, or None when there is none."""
        if self.client is None:
            record = IdempotencyRecord.objects.filter(scope=scope, key=digest(key)).first()
            return None if record is None else (record.status, record.version)
        fields = self.client.hmget(self._key(key, scope), "status", "version")
        return None if fields[0] is None else (fields[0].decode(), int(fields[1]))

    def field(self, key: str, name: str, scope: str = "anonymous") -> int:
        """A time field of a Redis record, in ms by the Redis clock."""
        return int(self.client.hget(self._key(key, scope), name))

    def expire_lock(self, key: str, scope: str = "anonymous") -> None:
        """The store's clock moved past the record's lock."""
        self._move(key, scope, "locked_until")

    def expire_record(self, key: str, scope: str = "anonymous") -> None:
        """The store's clock moved past the record's expiry (the key is
        kept, as a Redis whose expiry cycle has not reached it yet)."""
        self._move(key, scope, "expires_at")

    def _move(self, key: str, scope: str, field: str) -> None:
        if self.client is None:
            record = IdempotencyRecord.objects.get(scope=scope, key=digest(key))
            set_time(record.pk, field, -1)
            return
        seconds, micros = self.client.time()
        name = self._key(key, scope)
        assert self.client.exists(name)
        self.client.hset(name, field, seconds * 1000 + micros // 1000 - 1000)

    def _key(self, key: str, scope: str) -> str:
        return record_key(self.prefix, scope, digest(key))


def redis_client(url: str, cluster: bool = False) -> Any:
    import redis
    from redis.cluster import RedisCluster

    client = RedisCluster.from_url(url) if cluster else redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {url} is unreachable ({error}): CI runs the Redis store tests.")
        pytest.skip(f"Redis at {url} is unreachable ({error}); start it to test the Redis store")
    return client


def delete_prefixed(client: Any, prefix: str) -> None:
    """Remove this run's keys, and only them (never FLUSHALL a shared server)."""
    names = list(client.scan_iter(match=prefix + "*", count=1000))
    for name in names:
        client.delete(name)  # one by one: keys of a cluster live in many slots


def redis_settings(url: str, prefix: str, cluster: bool = False) -> dict[str, Any]:
    return {"STORE": "redis", "REDIS_URL": url, "REDIS_CLUSTER": cluster, "REDIS_PREFIX": prefix}


@contextlib.contextmanager
def redis_store_in(settings: Any, url: str = REDIS_URL, cluster: bool = False) -> Iterator[Backend]:
    """STORE = "redis" at ``url`` under a prefix of this test's own, removed after."""
    client = redis_client(url, cluster)
    prefix = f"idempotency-test-{uuid.uuid4().hex}:"
    previous = getattr(settings, "IDEMPOTENCY", {})
    settings.IDEMPOTENCY = {**previous, **redis_settings(url, prefix, cluster)}
    try:
        yield Backend("redis-cluster" if cluster else "redis", client, prefix)
    finally:
        delete_prefixed(client, prefix)
        client.close()


@pytest.fixture(scope="session")
def cluster() -> Iterator[RedisCluster]:
    """A 3-master Redis Cluster of the suite's own, on free loopback ports."""
    with redis_cluster(3) as started:
        yield started


@contextlib.contextmanager
def backend_for(kind: str, request: pytest.FixtureRequest, settings: Any) -> Iterator[Backend]:
    """The store ``kind`` names (``database``, ``redis``, ``redis-cluster``), set as a
    user sets it: ``STORE``; the cluster is the suite's own."""
    if kind == "database":
        yield Backend("database")
        return
    if kind == "redis":
        with redis_store_in(settings) as backend:
            yield backend
        return
    url = request.getfixturevalue("cluster").url
    with redis_store_in(settings, url, cluster=True) as backend:
        yield backend


@pytest.fixture(params=["database", "redis", "redis-cluster"])
def record_store(request: pytest.FixtureRequest, settings: Any) -> Iterator[Backend]:
    """Each test once per store."""
    with backend_for(request.param, request, settings) as backend:
        yield backend


@pytest.fixture
def redis_store(settings: Any) -> Iterator[Backend]:
    with redis_store_in(settings) as backend:
        yield backend
