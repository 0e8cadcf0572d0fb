"""A worker SIGKILLed while its view holds the key's lock, mid-transaction.
CI mode: 3 rounds; long mode (IDEMPOTENCY_RELIABILITY_LONG=1): 20."""

from __future__ import annotations

import http.client
import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from idempotency.models import IdempotencyRecord, Status
from tests.concurrency.race import Answer
from tests.reliability.faults import LOCK_TIMEOUT, TALLIES, committed, mode, record_of
from tests.servers import WORKERS, wait_until

pytestmark = pytest.mark.concurrency

ROUNDS = mode(3, 20)
# The first execution sleeps far longer than the test waits: it is killed.
BODY = {"amount": 13, "first_sleep": 25}


def retry_until_answered(server, key: str, deadline: float) -> list[Answer]:
    """Retries as Retry-After says while the answer is 409 request-in-progress."""
    retries: list[Answer] = []
    while True:
        answer = server.request("POST", "/fault/", BODY, key)
        retries.append(answer)
        if answer.status != 409:
            return retries
        assert answer.problem_slug == "request-in-progress"
        assert time.monotonic() < deadline, retries
        time.sleep(int(answer.headers["retry-after"]))


def test_a_killed_workers_writes_vanish_and_a_retry_runs_the_view_exactly_once(
    transactional_db, server, markers
):
    killed: list[int] = []
    retried_409 = 0
    for _ in range(ROUNDS):
        key = uuid.uuid4().hex
        with ThreadPoolExecutor(max_workers=1) as pool:
            doomed = pool.submit(server.request, "POST", "/fault/", BODY, key)
            # The pid is written after the view's Charge, inside its transaction.
            pid = wait_until(lambda key=key: markers.pid(key), 10, "the view runs", server)
            assert pid in server.workers()
            os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
            killed.append(pid)
            with pytest.raises((http.client.HTTPException, OSError)):
                doomed.result(timeout=30)

        # The database rolled the dead worker's transaction back; its claim,
        # committed before the view ran, stays until its lock expires.
        assert committed(key) == []
        record = record_of(key)
        assert record is not None
        assert (record.status, record.version) == (Status.IN_PROGRESS, 1)

        retries = retry_until_answered(server, key, killed_at + LOCK_TIMEOUT + 10)
        retried_409 += len(retries) - 1
        taken_over = retries[-1]

        assert (taken_over.status, taken_over.replayed) == (201, False)
        assert taken_over.json["pid"] != pid
        assert markers.runs(key) == [pid, taken_over.json["pid"]]
        assert committed(key) == [taken_over.json["id"]]
        record.refresh_from_db()
        assert (record.status, record.version) == (Status.COMPLETED, 3)
        assert bytes(record.response_body) == taken_over.body

        replay = server.request("POST", "/fault/", BODY, key)
        assert (replay.status, replay.replayed, replay.body) == (201, True, taken_over.body)
        assert len(markers.runs(key)) == 2

    assert not IdempotencyRecord.objects.filter(status=Status.IN_PROGRESS).exists()
    workers = wait_until(
        lambda: len(server.workers()) == WORKERS and server.workers(),
        30, "gunicorn replaced the killed workers", server,
    )  # fmt: skip
    assert not workers & set(killed)
    TALLIES.append(
        f"worker kill ({connection.vendor}): {ROUNDS} rounds, {len(killed)} SIGKILLs, "
        f"{retried_409} retries got 409 while the lock held, {ROUNDS} takeovers "
        f"(201, record version 3), executions={2 * ROUNDS} committed rows={ROUNDS}"
    )
