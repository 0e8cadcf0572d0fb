"""Concurrent duplicates across real processes: gunicorn with sync workers."""

from __future__ import annotations

import functools
import http.client
import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from idempotency.keys import digest
from idempotency.models import IdempotencyRecord, Status
from tests import servers
from tests.concurrency.race import (
    REQUESTS,
    ROUNDS,
    TALLIES,
    Answer,
    check_race,
    run_together,
)
from tests.servers import LOCK_TIMEOUT, WORKERS, wait_until
from tests.testapp.models import Charge

pytestmark = pytest.mark.concurrency

SLOW = {"amount": 5, "sleep": 0.4}
# gunicorn with sync workers, on the test database pytest-django created.
server = servers.server


def test_concurrent_duplicates_across_processes_run_the_view_once(transactional_db, server):
    for round_ in range(ROUNDS):
        key = str(uuid.uuid4())
        before = Charge.objects.count()

        answers = run_together(
            [functools.partial(server.request, "POST", "/plain/", SLOW, key)] * REQUESTS
        )

        original = check_race(
            answers, f"gunicorn -w {WORKERS} ({connection.vendor}) round {round_ + 1}"
        )
        assert Charge.objects.count() == before + 1
        assert Charge.objects.filter(pk=original.json["id"]).exists()
        later = server.request("POST", "/plain/", SLOW, key)
        assert (later.status, later.replayed, later.body) == (201, True, original.body)
        assert Charge.objects.count() == before + 1
        record = IdempotencyRecord.objects.get(key=digest(key))
        assert (record.status, record.version) == (Status.COMPLETED, 2)
    assert not IdempotencyRecord.objects.filter(status=Status.IN_PROGRESS).exists()


def test_a_killed_worker_rolls_back_and_its_lock_is_taken_over_after_the_timeout(
    transactional_db, server
):
    key = uuid.uuid4().hex
    body = {"amount": 9, "sleep": 1.5}
    pid_file = server.pid_dir / key

    with ThreadPoolExecutor(max_workers=1) as pool:
        doomed = pool.submit(server.request, "POST", "/doomed-worker/", body, key)
        pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), 10, "pid file"))
        assert pid in server.workers()
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        with pytest.raises((http.client.HTTPException, OSError)):
            doomed.result(timeout=30)

    # The dead worker's transaction died with its connection; its claim did not.
    assert Charge.objects.count() == 0
    record = IdempotencyRecord.objects.get(key=digest(key))
    assert (record.status, record.version) == (Status.IN_PROGRESS, 1)

    # A client that retries as Retry-After says: 409 while the lock holds, then
    # its retry takes the record over and runs the view once.
    retries: list[Answer] = []
    while True:
        answer = server.request("POST", "/doomed-worker/", body, key)
        retries.append(answer)
        if answer.status != 409:
            break
        assert answer.problem_slug == "request-in-progress"
        assert time.monotonic() - killed_at < LOCK_TIMEOUT + 10, retries
        time.sleep(int(answer.headers["retry-after"]))
    taken_over = retries[-1]

    assert len(retries) >= 2  # the first retry came while the dead worker's lock held
    assert taken_over.status == 201
    assert not taken_over.replayed
    assert taken_over.json["pid"] != pid
    charge = Charge.objects.get()
    assert (charge.pk, charge.label) == (taken_over.json["id"], f"pid:{taken_over.json['pid']}")
    record.refresh_from_db()
    assert (record.status, record.version) == (Status.COMPLETED, 3)
    assert bytes(record.response_body) == taken_over.body

    replay = server.request("POST", "/doomed-worker/", body, key)
    assert (replay.status, replay.replayed, replay.body) == (201, True, taken_over.body)
    assert Charge.objects.count() == 1
    assert not IdempotencyRecord.objects.filter(status=Status.IN_PROGRESS).exists()

    # gunicorn replaced the killed worker by itself.
    workers = wait_until(
        lambda: len(server.workers()) == WORKERS and server.workers(),
        30, "gunicorn replaced the killed worker", server,
    )  # fmt: skip
    assert pid not in workers
    TALLIES.append(
        f"killed worker ({connection.vendor}): client saw a dropped connection, "
        f"{len(retries) - 1} retries got 409 then 1 took over (201, record version "
        f"{record.version}), charges {Charge.objects.count()}, workers {len(workers)}"
    )
