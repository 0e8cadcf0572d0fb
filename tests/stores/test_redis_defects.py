"""Defects of the Redis store, each against a real Redis (contract section 6).

1. A worker whose lock ran out, by Redis's clock, is refused before its
   transaction commits, even if nobody has taken the record over yet; a
   worker that is confirmed has its lock (and the key's expiry) renewed to
   ``LOCK_TIMEOUT`` from then, so the completion after the commit finds it.
2. Redis Cluster errors that redis-py does not derive from ``RedisError``
   (no node reachable when the client is made, a slot no master serves) are
   503 problem details, not 500.
3. An outcome that Redis refuses after the call committed (a body over
   ``proto-max-bulk-len``) is kept without its body: retries get 410 instead
   of running the view again once the lock runs out.
4. A function called twice with one key inside one enclosing transaction
   replays the first call's result, as on the database store.

Time is data (``Backend.expire_lock`` moves a record's lock into the past);
servers of the tests' own are stopped by their PID.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction

from idempotency import IdempotencyError, InProgressError, KeyReusedError, idempotent_function
from idempotency.keys import digest
from idempotency.stores import Attempt, ClaimOutcome, StoredResponse, get_store
from idempotency.stores.redis import record_key
from tests.redis_servers import redis_cluster, redis_server
from tests.servers import free_port
from tests.stores.conftest import Backend, backend_for, redis_settings
from tests.test_http import assert_problem, send
from tests.testapp.models import Charge

pytestmark = pytest.mark.django_db(transaction=True)

RESPONSE = StoredResponse(201, {"Content-Type": "application/json"}, b'{"id": 1}')
LOCK = timedelta(seconds=60)


@pytest.fixture(params=["redis", "redis-cluster"])
def redis_kind(request: pytest.FixtureRequest, settings: Any) -> Iterator[Backend]:
    """The shared Redis, and the suite's own cluster."""
    with backend_for(request.param, request, settings) as backend:
        yield backend


def attempt(key: str, ttl: timedelta = timedelta(hours=1)) -> Attempt:
    return Attempt(
        scope="anonymous", key=digest(key), fingerprint="f" * 64, method="POST",
        path="/plain/", ttl=ttl, lock_for=LOCK, atomic=True,
    )  # fmt: skip


def redis_now(backend: Backend) -> int:
    seconds, micros = backend.client.time()
    return int(seconds) * 1000 + int(micros) // 1000


# 1. CONFIRM and the lock


def test_a_worker_whose_lock_ran_out_is_refused_and_its_writes_roll_back(
    redis_kind: Backend,
) -> None:
    store = get_store()
    claim = store.claim(attempt("lapsed"))
    assert claim.outcome is ClaimOutcome.ACQUIRED
    Charge.objects.create(amount=1, label="lapsed")
    redis_kind.expire_lock("lapsed")  # LOCK_TIMEOUT passed; nobody took it over yet

    assert store.finish(claim, RESPONSE, lambda: None) is False

    assert not Charge.objects.filter(label="lapsed").exists()
    assert redis_kind.state("lapsed") == ("in_progress", 1)
    retry = store.claim(attempt("lapsed"))
    assert retry.outcome is ClaimOutcome.ACQUIRED and retry.taken_over
    store.release(retry)


def test_a_lapsed_worker_over_http_answers_409_superseded_and_its_row_is_gone(
    client: Any, redis_kind: Backend
) -> None:
    def lapse(sender: Any, **kwargs: Any) -> None:
        if kwargs["instance"].label == "POST":
            redis_kind.expire_lock("key-1")  # while the view runs

    from django.db.models.signals import post_save

    post_save.connect(lapse, sender=Charge)
    try:
        response = send(client)
    finally:
        post_save.disconnect(lapse, sender=Charge)

    assert_problem(response, 409, "request-superseded")
    assert Charge.objects.count() == 0
    assert send(client).status_code == 201  # the retry takes over and runs once
    assert Charge.objects.count() == 1


def test_confirming_renews_the_lock_and_the_keys_expiry_until_the_completion(
    redis_kind: Backend,
) -> None:
    store = get_store()
    # A TTL shorter than the lock: the key's expiry is the lock's end.
    claim = store.claim(attempt("slow", ttl=timedelta(seconds=10)))
    name = record_key(redis_kind.prefix, "anonymous", digest("slow"))
    # The view ran until 5 s before its lock ends.
    ending = redis_now(redis_kind) + 5000
    redis_kind.client.hset(name, "locked_until", ending)
    redis_kind.client.pexpireat(name, ending)
    seen: dict[str, int] = {}

    def between_commit_and_completion() -> None:
        seen["now"] = redis_now(redis_kind)
        seen["locked_until"] = redis_kind.field("slow", "locked_until")
        seen["pttl"] = redis_kind.client.pttl(name)

    transaction.on_commit(between_commit_and_completion)  # runs after CONFIRM, before COMPLETE

    assert store.finish(claim, RESPONSE, lambda: None) is True

    assert seen["locked_until"] >= seen["now"] + LOCK.total_seconds() * 1000 - 1000
    assert seen["pttl"] > LOCK.total_seconds() * 1000 - 2000
    assert redis_kind.state("slow") == ("completed", 2)
    assert 0 < redis_kind.client.pttl(name) <= 10_000  # back to the record's expiry


# 2. Cluster errors are 503


def assert_unavailable(response: Any) -> None:
    assert_problem(response, 503, "store-unavailable")
    assert int(response["Retry-After"]) > 0
    assert Charge.objects.count() == 0


def test_a_cluster_with_no_reachable_node_is_503_with_retry_after(
    client: Any, settings: Any
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0?socket_connect_timeout=0.5"
    settings.IDEMPOTENCY = redis_settings(url, "idempotency-defects:", cluster=True)

    assert_unavailable(send(client))


@pytest.mark.parametrize("url_names", ["the-master-that-is-down", "a-live-node"])
def test_a_cluster_whose_master_for_the_key_is_down_is_503_with_retry_after(
    client: Any, settings: Any, url_names: str
) -> None:
    """REDIS_URL naming the master that is down: a worker that makes its
    client then (its first request, or after a fork) reaches no node
    (redis-py's RedisClusterException). Naming a live node: the client made
    before, the slot's master unreachable (a RedisError)."""
    from redis.cluster import RedisCluster

    with redis_cluster(3) as cluster:
        prefix = f"idempotency-defects-{uuid.uuid4().hex}:"
        probe = RedisCluster.from_url(cluster.url)
        try:
            owner = probe.get_node_from_key(record_key(prefix, "anonymous", digest("key-1")))
        finally:
            probe.close()
        down = next(node for node in cluster.nodes if node.port == owner.port)
        live = [node for node in cluster.nodes if node is not down]
        named = down if url_names == "the-master-that-is-down" else live[0]
        url = named.url + "?socket_timeout=0.5&socket_connect_timeout=0.5"
        settings.IDEMPOTENCY = redis_settings(url, prefix, cluster=True)
        if named is not down:
            assert send(client, key="before").status_code == 201  # the client is made
        down.stop()
        started = time.monotonic()
        while not all("cluster_state:fail" in node.cli("CLUSTER", "INFO") for node in live):
            assert time.monotonic() - started < 30, "the cluster did not see its master fail"
            time.sleep(0.1)

        response = send(client)

    assert_problem(response, 503, "store-unavailable")
    assert int(response["Retry-After"]) > 0
    assert Charge.objects.count() == (0 if named is down else 1)


# 3. An outcome refused after the commit


@pytest.fixture
def small_bulk_redis(settings: Any) -> Iterator[Backend]:
    """A Redis of the test's own that refuses an argument over 1 MiB."""
    import redis

    with redis_server("--proto-max-bulk-len", "1mb") as server:
        prefix = "idempotency-defects:"
        settings.IDEMPOTENCY = {
            **redis_settings(server.url, prefix),
            "MAX_STORED_RESPONSE_BYTES": 4 * 1024 * 1024,
        }
        client = redis.Redis.from_url(server.url)
        try:
            yield Backend("redis", client, prefix)
        finally:
            client.close()


def test_a_body_redis_refuses_after_the_commit_is_kept_without_it_and_retries_get_410(
    client: Any, small_bulk_redis: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"amount": 1, "kind": "big", "size": 2 * 1024 * 1024}
    key = "the-clients-key-k3y"

    with caplog.at_level(logging.ERROR, logger="idempotency"):
        first = send(client, body=body, key=key)

    assert first.status_code == 201
    assert len(first.content) == 2 * 1024 * 1024
    assert small_bulk_redis.state(key) == ("completed", 2)
    name = record_key(small_bulk_redis.prefix, "anonymous", digest(key))
    assert small_bulk_redis.client.hget(name, "response_body") is None
    assert small_bulk_redis.client.hget(name, "response_status") == b"201"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any("without its body" in r.getMessage() for r in errors)
    assert not any(key in r.getMessage() or digest(key) in r.getMessage() for r in errors)
    assert_problem(send(client, body=body, key=key), 410, "response-not-replayable")
    assert Charge.objects.count() == 1


def test_a_small_outcome_on_that_redis_is_stored_whole_and_replayed(
    client: Any, small_bulk_redis: Backend
) -> None:
    first = send(client, key="small")
    again = send(client, key="small")

    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert Charge.objects.count() == 1


# 4. Twice in one enclosing transaction

runs: list[str] = []


@idempotent_function(key="order_id", scope="redis-defects")
def charge(order_id: str, amount: int) -> dict[str, Any]:
    runs.append(order_id)
    return {"charge": Charge.objects.create(amount=amount, label=order_id).pk}


class Abort(Exception):
    pass


def test_the_same_key_twice_in_one_transaction_replays_the_first_result(
    redis_kind: Backend,
) -> None:
    runs.clear()
    order = f"order-{uuid.uuid4()}"

    with transaction.atomic():
        first = charge(order, 5)
        again = charge(order, 5)
        with pytest.raises(KeyReusedError):
            charge(order, 6)
        assert redis_kind.state(order, "redis-defects") == ("in_progress", 1)

    assert again == first
    assert runs == [order]
    assert redis_kind.state(order, "redis-defects") == ("completed", 2)
    assert charge(order, 5) == first  # stored once the transaction committed
    assert Charge.objects.filter(label=order).count() == 1


def test_after_the_enclosing_transaction_rolls_back_nothing_is_replayed(
    redis_kind: Backend,
) -> None:
    runs.clear()
    order = f"order-{uuid.uuid4()}"

    with pytest.raises(Abort), transaction.atomic():
        charge(order, 5)
        raise Abort

    # As before: nothing stored, the record in progress until LOCK_TIMEOUT.
    assert redis_kind.state(order, "redis-defects") == ("in_progress", 1)
    with pytest.raises(InProgressError):
        charge(order, 5)
    assert runs == [order]
    assert not Charge.objects.filter(label=order).exists()


def test_after_a_savepoint_around_the_call_rolls_back_nothing_is_replayed(
    redis_kind: Backend,
) -> None:
    runs.clear()
    order = f"order-{uuid.uuid4()}"

    with transaction.atomic():
        with pytest.raises(Abort), transaction.atomic():
            charge(order, 5)
            raise Abort
        with pytest.raises(InProgressError):
            charge(order, 5)

    assert runs == [order]
    assert not Charge.objects.filter(label=order).exists()
    assert redis_kind.state(order, "redis-defects") == ("in_progress", 1)


def test_a_value_too_large_to_keep_twice_in_one_transaction_is_not_replayable(
    redis_kind: Backend, settings: Any
) -> None:
    settings.IDEMPOTENCY = {**settings.IDEMPOTENCY, "MAX_STORED_RESPONSE_BYTES": 10}
    runs.clear()
    order = f"order-{uuid.uuid4()}"

    with transaction.atomic():
        charge(order, 5)
        with pytest.raises(IdempotencyError, match="cannot be returned again"):
            charge(order, 5)

    assert runs == [order]
