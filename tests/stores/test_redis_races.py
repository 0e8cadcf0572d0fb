"""Concurrent duplicates on the Redis store: real threads, real gunicorn workers.

Each round sends ``DUPLICATES`` identical requests with one new key at once
(released together by a barrier) to a view that sleeps while it holds the
key: exactly one runs the view; every other gets a replay of it or 409. And a
gunicorn worker SIGKILLed while it holds a key: the retry runs after
LOCK_TIMEOUT, never while the lock is live. And one SIGKILLed after its
database commit, before its response is stored: the same wait, then the view
runs again (the caveat docs/redis.md states).
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from tests.concurrency.race import ROUNDS, Answer, check_race, client_answer, run_together
from tests.servers import LOCK_TIMEOUT, WORKERS, Server, gunicorn_server, wait_until
from tests.stores.conftest import REDIS_URL, TALLIES, Backend, delete_prefixed, redis_client
from tests.testapp.models import Charge

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]

DUPLICATES = 32
SLOW = {"amount": 5, "sleep": 0.4}


def post(client: Client, key: str) -> Answer:
    response = client.post(
        "/plain/", json.dumps(SLOW), content_type="application/json",
        headers={"Idempotency-Key": key},
    )  # fmt: skip
    return client_answer(response)


def test_concurrent_duplicates_in_threads_run_the_view_once(redis_store: Backend) -> None:
    for round_ in range(ROUNDS):
        key = uuid.uuid4().hex
        before = Charge.objects.count()

        answers = run_together([functools.partial(post, Client(), key)] * DUPLICATES)

        original = check_race(
            answers, f"Redis, {DUPLICATES} threads ({connection.vendor}), round {round_ + 1}"
        )
        assert Charge.objects.count() == before + 1
        assert redis_store.state(key) == ("completed", 2)
        later = post(Client(), key)
        assert (later.status, later.replayed, later.body) == (201, True, original.body)
    TALLIES.append(
        f"{DUPLICATES} threads on Redis ({connection.vendor}): {ROUNDS} rounds, one execution "
        "per key"
    )


@pytest.fixture(scope="module", params=["redis", "redis-cluster"])
def redis_server_gunicorn(
    request: pytest.FixtureRequest, django_db_setup: None, tmp_path_factory: Any
) -> Iterator[Any]:
    """gunicorn on the shared Redis, or on the suite's Redis Cluster."""
    cluster = request.param == "redis-cluster"
    url = request.getfixturevalue("cluster").url if cluster else REDIS_URL
    client = redis_client(url, cluster)
    prefix = f"idempotency-test-{uuid.uuid4().hex}:"
    try:
        with gunicorn_server(
            tmp_path_factory.mktemp("gunicorn-redis"),
            env={
                "IDEMPOTENCY_TEST_SERVER_REDIS_URL": url,
                "IDEMPOTENCY_TEST_SERVER_REDIS_PREFIX": prefix,
                "IDEMPOTENCY_TEST_SERVER_REDIS_CLUSTER": "1" if cluster else "0",
            },
        ) as server:
            yield server, Backend(request.param, client, prefix)
    finally:
        delete_prefixed(client, prefix)
        client.close()


def test_concurrent_duplicates_across_gunicorn_workers_run_the_view_once(
    redis_server_gunicorn: tuple[Server, Backend],
) -> None:
    server, backend = redis_server_gunicorn
    rounds = int(os.environ.get("IDEMPOTENCY_REDIS_GUNICORN_ROUNDS", ROUNDS))
    tally = {"201": 0, "replay": 0, "409": 0}
    for round_ in range(rounds):
        key = uuid.uuid4().hex
        before = Charge.objects.count()

        answers = run_together(
            [functools.partial(server.request, "POST", "/plain/", SLOW, key)] * DUPLICATES
        )

        original = check_race(answers, f"Redis, gunicorn -w {WORKERS}, round {round_ + 1}")
        assert Charge.objects.count() == before + 1
        assert backend.state(key) == ("completed", 2)
        later = server.request("POST", "/plain/", SLOW, key)
        assert (later.status, later.replayed, later.body) == (201, True, original.body)
        for answer in answers:
            kind = "replay" if answer.replayed else str(answer.status)
            tally[kind] += 1
    TALLIES.append(
        f"gunicorn -w {WORKERS} on {backend.name} ({connection.vendor}): {rounds} rounds of "
        f"{DUPLICATES} duplicates, one execution per key; answers {tally}"
    )


def test_a_killed_worker_holding_a_key_is_taken_over_after_the_lock_timeout(
    redis_server_gunicorn: tuple[Server, Backend],
) -> None:
    server, backend = redis_server_gunicorn
    key = uuid.uuid4().hex
    body = {"amount": 9, "sleep": 1.5}
    pid_file = server.pid_dir / key
    with ThreadPoolExecutor(max_workers=1) as pool:
        doomed = pool.submit(server.request, "POST", "/doomed-worker/", body, key)
        pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), 10, "pid file"))
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        with pytest.raises((http.client.HTTPException, OSError)):
            doomed.result(timeout=30)
    assert Charge.objects.count() == 0  # its transaction died with its connection
    assert backend.state(key) == ("in_progress", 1)  # its claim did not
    lock_ends = backend.field(key, "locked_until")  # by Redis's clock

    retries: list[tuple[float, Answer]] = []
    while True:
        sent_at = time.monotonic() - killed_at
        answer = server.request("POST", "/doomed-worker/", body, key)
        retries.append((sent_at, answer))
        if answer.status != 409:
            break
        assert answer.problem_slug == "request-in-progress"
        assert time.monotonic() - killed_at < LOCK_TIMEOUT + 10, retries
        time.sleep(0.2)
    taken_over = retries[-1][1]

    assert len(retries) >= 2  # the first retry came while the dead worker's lock held
    assert (taken_over.status, taken_over.replayed) == (201, False)
    assert taken_over.json["pid"] != pid
    assert Charge.objects.count() == 1
    assert backend.state(key) == ("completed", 3)
    # Claimed again only once the dead worker's lock had run out, by Redis's clock.
    assert backend.field(key, "created_at") >= lock_ends
    replay = server.request("POST", "/doomed-worker/", body, key)
    assert (replay.status, replay.replayed, replay.body) == (201, True, taken_over.body)
    TALLIES.append(
        f"killed worker on {backend.name} ({connection.vendor}): {len(retries) - 1} retries got 409 "
        f"(the last sent {retries[-2][0]:.2f} s after the kill), the retry sent at "
        f"{retries[-1][0]:.2f} s took over "
        f"(LOCK_TIMEOUT {LOCK_TIMEOUT} s); charges {Charge.objects.count()}"
    )


def test_a_worker_killed_between_the_database_commit_and_the_stored_response_runs_again(
    redis_server_gunicorn: tuple[Server, Backend],
) -> None:
    """docs/redis.md, "The one thing it cannot promise": the view's writes
    committed, its response never stored. The record stays in progress until
    LOCK_TIMEOUT (retries 409), then a retry takes it over and the view runs
    again: its effect happens twice."""
    server, backend = redis_server_gunicorn
    key = uuid.uuid4().hex
    body = {"amount": 7}
    runs = server.pid_dir / f"{key}.runs"
    with pytest.raises((http.client.HTTPException, OSError)):  # the worker died mid-request
        server.request("POST", "/dies-after-commit/", body, key)
    died_at = time.monotonic()

    def since_the_claim() -> float:
        """Seconds since the dead worker's claim, by Redis's clock."""
        seconds, micros = backend.client.time()
        return (seconds * 1000 + micros // 1000 - claimed_at) / 1000

    (first_pid,) = runs.read_text().split()
    assert Charge.objects.filter(label=key).count() == 1  # its write committed
    assert backend.state(key) == ("in_progress", 1)  # its response was never stored
    lock_ends = backend.field(key, "locked_until")
    claimed_at = backend.field(key, "created_at")

    retries: list[tuple[float, Answer]] = []
    while True:
        sent_at = since_the_claim()
        answer = server.request("POST", "/dies-after-commit/", body, key)
        retries.append((sent_at, answer))
        if answer.status == 409:
            retries[-1] = (since_the_claim(), answer)  # when its 409 was in
        if answer.status != 409:
            break
        assert answer.problem_slug == "request-in-progress"
        assert Charge.objects.filter(label=key).count() == 1  # nothing ran while the lock held
        assert time.monotonic() - died_at < LOCK_TIMEOUT + 10, retries
        time.sleep(0.2)
    again = retries[-1][1]

    assert len(retries) >= 2  # the first retry came while the dead worker's lock held
    assert (again.status, again.replayed) == (201, False)  # the view ran again ...
    assert Charge.objects.filter(label=key).count() == 2  # ... and its effect happened twice
    assert runs.read_text().split() == [first_pid, str(again.json["pid"])]
    assert backend.state(key) == ("completed", 3)
    assert backend.field(key, "created_at") >= lock_ends  # taken over once the lock ran out
    replay = server.request("POST", "/dies-after-commit/", body, key)
    assert (replay.status, replay.replayed, replay.body) == (201, True, again.body)
    TALLIES.append(
        f"worker killed after its commit, before COMPLETE, on {backend.name} "
        f"({connection.vendor}): {len(retries) - 1} retries got 409 (the last answered "
        f"{retries[-2][0]:.2f} s after the claim, by Redis's clock), the retry sent at "
        f"{retries[-1][0]:.2f} s claimed at "
        f"{(backend.field(key, 'created_at') - claimed_at) / 1000:.2f} s (the lock ran out at "
        f"{(lock_ends - claimed_at) / 1000:.2f} s) and ran the view again; charges for the key: 2"
    )
