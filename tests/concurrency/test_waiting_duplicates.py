"""A duplicate waiting for a running first request never holds up anyone else.

With ATOMIC_REQUESTS the first request's claim is an uncommitted row. On
InnoDB, a duplicate's INSERT IGNORE waiting on that row queues a next-key lock
that blocks every other caller's new key falling in the same index gap
(issue "Security", item 7): here another tenant's key sorts just before the
contested one, in an otherwise empty table.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from tests.concurrency.race import client_answer, closing_connection
from tests.testapp import views_doors
from tests.testapp.models import Charge

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]


def post(path: str, tenant: str, key: str) -> Any:
    def call() -> Any:
        response = Client().post(
            path, json.dumps({"amount": 1}), content_type="application/json",
            headers={"Idempotency-Key": key, "X-Tenant": tenant},
        )  # fmt: skip
        return client_answer(response)

    return closing_connection(call)


def lock_waits() -> int:
    """How many sessions wait in a claim right now, as the database reports it."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        else:
            cursor.execute(
                "SELECT count(*) FROM information_schema.processlist "
                "WHERE command = 'Query' AND info LIKE 'INSERT IGNORE INTO `idempotency%%'"
            )
        return int(cursor.fetchone()[0])


def until(condition: Any, seconds: float = 30) -> None:
    """Poll ``condition`` (an event in another thread) up to a generous bound."""
    done = threading.Event()
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("the duplicate was neither answered nor seen waiting")


def test_a_waiting_duplicate_does_not_block_another_callers_new_key(
    atomic_requests_on: Any,
) -> None:
    views_doors.GATE_ENTERED.clear()
    views_doors.GATE.clear()
    pool = ThreadPoolExecutor(max_workers=2)
    try:
        first = pool.submit(post("/gated/", "t9", "contested"))
        assert views_doors.GATE_ENTERED.wait(30)
        duplicate = pool.submit(post("/gated/", "t9", "contested"))
        # The duplicate has been answered, or waits on the first one's row.
        until(lambda: duplicate.done() or lock_waits() > 0)
        answered_before = duplicate.done()
        # Another tenant's new key, sorting just before the contested record.
        other = post("/tenant-callable/", "t1", "unrelated")()
        still_waiting_after = lock_waits() > 0 and not duplicate.done()
        held = not first.done()
        views_doors.GATE.set()
        first_answer, duplicate_answer = first.result(60), duplicate.result(60)
    finally:
        views_doors.GATE.set()
        pool.shutdown(wait=True)

    assert other.status == 201
    assert held, "the other caller's request waited for the first request to finish"
    # Either the duplicate never waited, or the other caller went past it
    # while it waited: in neither case did the duplicate hold the other up.
    assert answered_before or still_waiting_after
    assert first_answer.status == 201
    if connection.vendor == "mysql":
        # No lock wait: the duplicate is answered at once.
        assert (duplicate_answer.status, duplicate_answer.problem_slug) == (
            409,
            "request-in-progress",
        )
    else:
        # PostgreSQL has no gap locks: the duplicate waits and replays.
        assert duplicate_answer.replayed
    assert Charge.objects.filter(label="gated").count() == 1


def test_a_duplicate_waiting_longer_than_lock_timeout_answers_409_rather_than_take_over(
    settings: Any,
) -> None:
    """Contract section 11: the duplicate waits for the first to finish, and
    answers 409 if it still runs. A wait that outlasts the first's lock must
    not become a takeover that runs the view beside a first still running."""
    settings.IDEMPOTENCY = {"LOCK_TIMEOUT": 1}
    views_doors.GATE_ENTERED.clear()
    views_doors.GATE.clear()
    views_doors.WAITING_RUNS.clear()
    pool = ThreadPoolExecutor(max_workers=2)
    try:
        first = pool.submit(post("/gated-waiting/", "t1", "long-wait"))
        assert views_doors.GATE_ENTERED.wait(30)
        duplicate = pool.submit(post("/gated-waiting/", "t1", "long-wait"))
        until(duplicate.done)  # a takeover would hold the duplicate at the gate
        first_running = not first.done()
        duplicate_answer = duplicate.result()
        views_doors.GATE.set()
        first_answer = first.result(60)
    finally:
        views_doors.GATE.set()
        pool.shutdown(wait=True)

    assert first_running
    assert (duplicate_answer.status, duplicate_answer.problem_slug) == (409, "request-in-progress")
    assert views_doors.WAITING_RUNS == ["ran"]
    assert first_answer.status == 201
