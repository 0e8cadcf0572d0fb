"""Redis goes away during a stream of requests, and comes back (contract section 6).

The Redis is a redis-server of the test's own on a free loopback port: it is
killed by PID (SIGKILL: a crash, or a cut network, for the client) and
started again on the same port; or frozen (SIGSTOP: a hung Redis) and thawed.
Client threads send a stream of requests, each with a new key, through
Django's test client to a view that counts its executions.

Requests that start after the cut and end before the restart must get 503
problem+json with Retry-After, and their view must not have run. Requests in
flight at the cut may get 201 or 503. After the restart every request gets 201:
the store reconnects by itself, nothing is restarted.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from tests.concurrency.race import Answer, client_answer
from tests.redis_servers import RedisServer, redis_server
from tests.stores.conftest import TALLIES, redis_settings
from tests.testapp.models import Charge
from tests.testapp.views import EXECUTIONS

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = 3
ANSWERS_PER_PHASE = 30
PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class Sent:
    key: str
    started: float
    ended: float
    answer: Answer


class Stream:
    """Client threads, each sending one new key after another until stopped."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._send) for _ in range(CLIENTS)]

    def __enter__(self) -> Stream:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(60)

    def _send(self) -> None:
        from django.db import connection

        client = Client()
        try:
            while not self.stopping.is_set():
                key = uuid.uuid4().hex
                started = time.monotonic()
                response = client.post(
                    "/counted/", json.dumps({"amount": 1}), content_type="application/json",
                    headers={"Idempotency-Key": key},
                )  # fmt: skip
                self.sent.append(Sent(key, started, time.monotonic(), client_answer(response)))
        finally:
            connection.close()

    def wait_for(self, count: int, since: float) -> None:
        deadline = time.monotonic() + 60
        while sum(s.started > since for s in self.sent) < count:
            assert time.monotonic() < deadline, "the stream stalled"
            time.sleep(0.01)

    def between(self, after: float, before: float) -> list[Sent]:
        return [s for s in self.sent if s.started > after and s.ended < before]


@pytest.fixture
def own_redis(settings: Any) -> Iterator[RedisServer]:
    with redis_server() as server:
        # Short timeouts, so the frozen-Redis test is quick; the defaults are 1 s and 2 s.
        url = server.url + "?socket_timeout=0.5&socket_connect_timeout=0.5"
        settings.IDEMPOTENCY = redis_settings(url, "idempotency-outage:")
        yield server


def assert_refused(sent: list[Sent]) -> None:
    for one in sent:
        assert one.answer.status == 503, one
        assert one.answer.headers["content-type"] == PROBLEM_JSON
        assert one.answer.problem_slug == "store-unavailable"
        assert one.answer.headers["retry-after"] == "5"
        assert EXECUTIONS.get(one.key, 0) == 0, "the view ran without a claim"


@pytest.mark.concurrency  # client threads writing at once
def test_redis_killed_mid_stream_is_503_without_running_the_view_then_recovers(
    own_redis: RedisServer,
) -> None:
    charges_before = Charge.objects.count()
    with Stream() as stream:
        stream.wait_for(ANSWERS_PER_PHASE, since=0)
        killing = time.monotonic()
        own_redis.stop()
        # Only once the process is gone: a request that started while the
        # kill was on its way could still claim, and is in flight, not refused.
        cut = time.monotonic()
        stream.wait_for(ANSWERS_PER_PHASE, since=cut)
        restored = time.monotonic()
        own_redis.start()
        started_again = time.monotonic()
        stream.wait_for(ANSWERS_PER_PHASE, since=started_again)
    before = [s for s in stream.sent if s.ended < killing]
    during = stream.between(cut, restored)
    after = [s for s in stream.sent if s.started > started_again]

    assert {s.answer.status for s in before} == {201}
    assert len(during) >= ANSWERS_PER_PHASE - CLIENTS
    assert_refused(during)
    assert {s.answer.status for s in after} == {201}, "the store did not reconnect by itself"
    assert all(EXECUTIONS[s.key] == 1 for s in before + after)
    in_flight = [s for s in stream.sent if s not in before and s not in during and s not in after]
    assert {s.answer.status for s in in_flight} <= {201, 503}
    assert all(EXECUTIONS.get(s.key, 0) <= 1 for s in stream.sent)
    # Every 201 is one committed execution; a 503 after the view ran rolled it back.
    assert Charge.objects.count() - charges_before == sum(
        s.answer.status == 201 for s in stream.sent
    )
    refused = [s.ended - s.started for s in during]
    TALLIES.append(
        f"Redis killed: {len(before)} answered before, {len(during)} refused during "
        f"(503 in {min(refused) * 1000:.1f}-{max(refused) * 1000:.1f} ms), "
        f"{len(in_flight)} in flight, {len(after)} answered after the restart"
    )


def test_a_hung_redis_is_503_after_the_socket_timeout_then_recovers(
    own_redis: RedisServer,
) -> None:
    client = Client()
    before, frozen, later = (uuid.uuid4().hex for _ in range(3))
    assert client.post("/counted/", {}, headers={"Idempotency-Key": before}).status_code == 201
    assert own_redis.process is not None
    own_redis.process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        response = client.post("/counted/", {}, headers={"Idempotency-Key": frozen})
        waited = time.monotonic() - started
    finally:
        own_redis.process.send_signal(signal.SIGCONT)
    refused = client_answer(response)
    assert (refused.status, refused.problem_slug) == (503, "store-unavailable")
    assert refused.headers["retry-after"] == "5"
    assert frozen not in EXECUTIONS

    assert client.post("/counted/", {}, headers={"Idempotency-Key": later}).status_code == 201
    # The claim that timed out was still in Redis's socket buffer, and ran
    # when Redis resumed: the key is held until LOCK_TIMEOUT, never run twice.
    retry = client_answer(client.post("/counted/", {}, headers={"Idempotency-Key": frozen}))
    assert (retry.status, retry.problem_slug) in {(201, None), (409, "request-in-progress")}
    assert EXECUTIONS.get(frozen, 0) == (1 if retry.status == 201 else 0)
    TALLIES.append(
        f"Redis frozen (socket_timeout 0.5 s): 503 after {waited * 1000:.0f} ms; "
        f"the same key's retry after the thaw: {retry.status}"
    )


def refused_without_running(settings: Any, url: str) -> Answer:
    settings.IDEMPOTENCY = redis_settings(url, f"idempotency-test-{uuid.uuid4().hex}:")
    key = uuid.uuid4().hex
    answer = client_answer(Client().post("/counted/", {}, headers={"Idempotency-Key": key}))
    assert (answer.status, answer.problem_slug) == (503, "store-unavailable")
    assert answer.headers["retry-after"] == "5"
    assert key not in EXECUTIONS
    return answer


def test_a_read_only_replica_after_a_failover_is_503_and_the_view_does_not_run(
    settings: Any,
) -> None:
    with redis_server() as master, redis_server() as replica:
        replica.cli("REPLICAOF", "127.0.0.1", str(master.port))
        assert "role:slave" in replica.cli("INFO", "replication")

        refused_without_running(settings, replica.url)


def test_a_full_redis_with_noeviction_is_503_and_the_view_does_not_run(settings: Any) -> None:
    with redis_server("--maxmemory-policy", "noeviction") as full:
        full.cli("CONFIG", "SET", "maxmemory", "1")  # below what it uses already: full
        assert "OOM" in full.cli("SET", "probe", "x")

        refused_without_running(settings, full.url)


def test_a_redis_that_fills_up_while_the_view_runs_rolls_the_view_back(settings: Any) -> None:
    with redis_server("--maxmemory-policy", "noeviction") as full:
        settings.IDEMPOTENCY = redis_settings(full.url, "idempotency-test-fills:")
        key = uuid.uuid4().hex
        body = {"amount": 1, "fill_redis_port": full.port}
        answer = client_answer(
            Client().post(
                "/counted/",
                json.dumps(body),
                content_type="application/json",
                headers={"Idempotency-Key": key},
            )  # fmt: skip
        )

    # Refused before the call's transaction committed: nothing of it is kept.
    assert (answer.status, answer.problem_slug) == (503, "store-unavailable")
    assert EXECUTIONS[key] == 1
    assert Charge.objects.count() == 0
