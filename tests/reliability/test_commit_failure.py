"""The view's own transaction fails at COMMIT, through gunicorn.

The first execution writes a row whose foreign key points nowhere; Django's
foreign keys are DEFERRABLE INITIALLY DEFERRED on PostgreSQL, so the view
returns and the COMMIT fails. (InnoDB checks foreign keys at once, so on
MariaDB this file is not collected: see conftest.py.) CI mode: 3 rounds;
long mode (IDEMPOTENCY_RELIABILITY_LONG=1): 20.
"""

from __future__ import annotations

import uuid

import pytest
from django.db import connection

from idempotency.models import IdempotencyRecord, Status
from tests.reliability.faults import TALLIES, committed, mode, record_of

pytestmark = pytest.mark.concurrency

ROUNDS = mode(3, 20)
BODY = {"amount": 19, "fail_commit_first": True}


def test_a_failed_commit_releases_the_record_and_a_retry_runs_cleanly(
    transactional_db, server, markers
):
    for _ in range(ROUNDS):
        key = uuid.uuid4().hex

        failed = server.request("POST", "/fault/", BODY, key)

        # The database error is re-raised for Django to answer (its 500 page,
        # DEBUG off: no traceback); nothing of the request is committed.
        assert failed.status == 500
        assert b"Traceback" not in failed.body
        assert len(markers.runs(key)) == 1
        assert len(markers.returned(key)) == 1  # the view returned: COMMIT failed
        assert committed(key) == []
        assert record_of(key) is None  # released: the key is free again

        retry = server.request("POST", "/fault/", BODY, key)

        assert (retry.status, retry.replayed, retry.json["first"]) == (201, False, False)
        assert len(markers.runs(key)) == 2
        assert committed(key) == [retry.json["id"]]
        record = record_of(key)
        assert record is not None
        assert (record.status, record.version) == (Status.COMPLETED, 2)

        replay = server.request("POST", "/fault/", BODY, key)
        assert (replay.status, replay.replayed, replay.body) == (201, True, retry.body)
        assert len(markers.runs(key)) == 2

    assert not IdempotencyRecord.objects.filter(status=Status.IN_PROGRESS).exists()
    TALLIES.append(
        f"commit failure ({connection.vendor}): {ROUNDS} rounds, each: COMMIT failed on a "
        f"deferred foreign key (500, record released), retry 201, replay; "
        f"executions={2 * ROUNDS} committed rows={ROUNDS}"
    )
