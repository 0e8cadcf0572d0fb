"""A worker that outlives its lock, with real threads and real transactions."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from idempotency.keys import digest
from idempotency.models import IdempotencyRecord, Status
from tests.concurrency.race import TALLIES, Answer, client_answer, closing_connection
from tests.testapp.models import Charge

pytestmark = pytest.mark.concurrency

LOCK_TIMEOUT = 1.0
# The view outlives the lock; the second request arrives after the lock expired
# and while the first view still sleeps.
BODY = {"amount": 11, "sleep": 2.5}
SECOND_AFTER = 1.3


def post(key: str, body: dict[str, Any]) -> Answer:
    response = Client().post(
        "/plain/",
        data=json.dumps(body),
        content_type="application/json",
        headers={"Idempotency-Key": key},
    )
    return client_answer(response)


def wait_for_record(key: str, timeout: float = 5) -> IdempotencyRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = IdempotencyRecord.objects.filter(key=digest(key)).first()
        if record is not None:
            return record
        time.sleep(0.01)
    raise AssertionError(f"no record for key {key} after {timeout}s")


def test_a_stale_worker_is_rolled_back_and_superseded_by_the_takeover(transactional_db, settings):
    settings.IDEMPOTENCY = {"LOCK_TIMEOUT": LOCK_TIMEOUT}
    key = str(uuid.uuid4())

    with ThreadPoolExecutor(max_workers=2) as pool:
        stale = pool.submit(closing_connection(lambda: post(key, BODY)))
        claimed = wait_for_record(key)
        assert (claimed.status, claimed.version) == (Status.IN_PROGRESS, 1)
        # The claim committed before we saw it: its lock has expired after this.
        time.sleep(SECOND_AFTER)
        assert not stale.done()  # the first view is still sleeping, past its lock
        taker = pool.submit(closing_connection(lambda: post(key, BODY)))
        stale_answer = stale.result(timeout=30)
        taker_answer = taker.result(timeout=30)

    assert stale_answer.status == 409
    assert stale_answer.problem_slug == "request-superseded"
    assert taker_answer.status == 201
    assert not taker_answer.replayed
    # Only the taker's write committed: the stale worker's Charge was rolled back.
    assert list(Charge.objects.values_list("pk", flat=True)) == [taker_answer.json["id"]]
    record = IdempotencyRecord.objects.get(key=digest(key))
    assert (record.status, record.version) == (Status.COMPLETED, 3)
    assert record.response_status == 201
    assert bytes(record.response_body) == taker_answer.body

    replay = post(key, BODY)
    assert replay.status == 201
    assert replay.replayed
    assert replay.body == taker_answer.body
    assert Charge.objects.count() == 1
    TALLIES.append(
        f"takeover ({connection.vendor}): stale worker 409 "
        f"{stale_answer.problem_slug}, taker 201, record version {record.version}, "
        f"charges {Charge.objects.count()}"
    )
