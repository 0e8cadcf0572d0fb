"""A storm of duplicates across real processes: gunicorn with 4 sync workers,
rounds of 32 concurrent requests carrying one key to a slow view that writes
a row. CI mode: 5 rounds; long mode (IDEMPOTENCY_RELIABILITY_LONG=1): 50."""

from __future__ import annotations

import functools
import uuid
from collections import Counter

import pytest
from django.db import connection

from idempotency.models import IdempotencyRecord, Status
from tests.concurrency.race import Answer, run_together, tally_race
from tests.reliability.faults import TALLIES, committed, mode, record_of

pytestmark = pytest.mark.concurrency

ROUNDS = mode(5, 50)
REQUESTS = 32
# Well under the server's LOCK_TIMEOUT (2 s): no request may be taken over.
SLOW = {"amount": 11, "sleep": 0.5}


def classify(answers: list[Answer], charge: int) -> Counter[str]:
    """Every answer is the original, a replay of it, or a 409 with Retry-After."""
    original, tally = tally_race(answers)
    assert original.json["id"] == charge
    return tally


def test_a_storm_of_duplicates_executes_each_key_exactly_once(transactional_db, server, markers):
    totals: Counter[str] = Counter()
    executions = 0
    for _ in range(ROUNDS):
        key = uuid.uuid4().hex

        answers = run_together(
            [functools.partial(server.request, "POST", "/fault/", SLOW, key)] * REQUESTS
        )

        # Executions are counted in a file before the view's first write, so
        # an execution that was rolled back would still be counted.
        runs = markers.runs(key)
        assert len(runs) == 1, runs
        (charge,) = committed(key)
        totals += classify(answers, charge)
        later = server.request("POST", "/fault/", SLOW, key)
        assert (later.status, later.replayed, later.json["id"]) == (201, True, charge)
        assert len(markers.runs(key)) == 1
        executions += len(runs)
        record = record_of(key)
        assert record is not None
        assert (record.status, record.version) == (Status.COMPLETED, 2)

    assert not IdempotencyRecord.objects.filter(status=Status.IN_PROGRESS).exists()
    TALLIES.append(
        f"storm ({connection.vendor}): {ROUNDS} rounds x {REQUESTS} requests, "
        f"executions={executions} committed rows={ROUNDS}, 201={totals['201']} "
        f"replay={totals['replay']} 409={totals['409']}, then 1 replay per round"
    )
