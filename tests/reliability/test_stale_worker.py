"""A worker that outlives its lock comes back after another process took the
key over. CI mode: 1 round; long mode (IDEMPOTENCY_RELIABILITY_LONG=1): 5."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from idempotency.models import IdempotencyRecord, Status
from tests.concurrency.race import Answer
from tests.reliability.faults import LOCK_TIMEOUT, TALLIES, committed, mode, record_of
from tests.servers import wait_until

pytestmark = pytest.mark.concurrency

ROUNDS = mode(1, 5)
# Only the key's first execution pauses, past the lock; the body (and so the
# fingerprint) is the same for every request.
BODY = {"amount": 17, "first_sleep": LOCK_TIMEOUT + 4}


def test_a_stale_worker_is_rolled_back_and_superseded_by_the_process_that_took_over(
    transactional_db, server, markers
):
    in_progress = 0
    for _ in range(ROUNDS):
        key = uuid.uuid4().hex
        with ThreadPoolExecutor(max_workers=1) as pool:
            stale = pool.submit(server.request, "POST", "/fault/", BODY, key)
            stale_pid = wait_until(lambda key=key: markers.pid(key), 10, "the view runs", server)

            # The second client retries as Retry-After says until the first
            # request's lock has expired, then takes the record over.
            answers: list[Answer] = []
            deadline = time.monotonic() + LOCK_TIMEOUT + 10
            while not answers or answers[-1].status == 409:
                assert time.monotonic() < deadline, answers
                if answers:
                    assert answers[-1].problem_slug == "request-in-progress"
                    time.sleep(int(answers[-1].headers["retry-after"]))
                answers.append(server.request("POST", "/fault/", BODY, key))
            second = answers[-1]
            in_progress += len(answers) - 1
            assert len(answers) >= 2  # the first attempt came while the lock held
            assert (second.status, second.replayed) == (201, False)
            assert second.json["pid"] != stale_pid
            assert not stale.done()  # the first request is still in its view

            first = stale.result(timeout=30)

        # The stale worker's update failed the version check: 409, rolled back.
        assert first.status == 409
        assert first.problem_slug == "request-superseded"
        assert int(first.headers["retry-after"]) > 0
        assert markers.runs(key) == [stale_pid, second.json["pid"]]
        assert committed(key) == [second.json["id"]]
        record = record_of(key)
        assert record is not None
        # Claim (1), takeover (2), the second request's response (3); nothing after.
        assert (record.status, record.version) == (Status.COMPLETED, 3)
        assert bytes(record.response_body) == second.body

        third = server.request("POST", "/fault/", BODY, key)
        assert (third.status, third.replayed, third.body) == (201, True, second.body)
        assert len(markers.runs(key)) == 2

    assert not IdempotencyRecord.objects.filter(status=Status.IN_PROGRESS).exists()
    TALLIES.append(
        f"stale worker ({connection.vendor}): {ROUNDS} rounds, each: first request paused "
        f"{BODY['first_sleep']}s with LOCK_TIMEOUT={LOCK_TIMEOUT}s, second got "
        f"{in_progress / ROUNDS:.1f} x 409 then took over (201), first got 409 "
        f"request-superseded, third replayed; executions={2 * ROUNDS} committed rows={ROUNDS}"
    )
