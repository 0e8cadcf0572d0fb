"""A request's own writes and its stored response commit together or not at all.

Every test here runs with real commits (``transaction=True``) and reads what
was committed through a second database connection, with ``ATOMIC_REQUESTS``
off and on.
"""

from __future__ import annotations

import json

import pytest
from django.db import IntegrityError, connection, connections

from idempotency.keys import digest
from idempotency.models import IdempotencyRecord, Status
from tests.testapp.models import Charge
from tests.testapp.views import ViewFailed

pytestmark = pytest.mark.django_db(transaction=True)

RECORDS = IdempotencyRecord._meta.db_table
CHARGES = Charge._meta.db_table


def committed(sql: str) -> list[tuple]:
    """Rows as another connection sees them: only what was committed."""
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute(sql)
            return [tuple(row) for row in cursor.fetchall()]
    finally:
        other.close()


def committed_charges() -> int:
    return committed(f"SELECT COUNT(*) FROM {CHARGES}")[0][0]


def committed_records() -> list[tuple]:
    return committed(
        f"SELECT {connection.ops.quote_name('key')}, status, version, response_status "
        f"FROM {RECORDS} ORDER BY id"
    )


def post(client, path, body, key="key-1"):
    return client.post(
        path, json.dumps(body), content_type="application/json", HTTP_IDEMPOTENCY_KEY=key
    )


def test_atomic_requests_takes_effect(client, atomic_requests):
    response = post(client, "/atomic-depth/", {})

    assert response.status_code == 201
    assert response.json()["atomic_blocks"] == (2 if atomic_requests else 1)


def test_claim_is_committed_before_the_view_runs_unless_atomic_requests(client, atomic_requests):
    response = post(client, "/claim-visibility/", {})

    assert response.status_code == 201
    if atomic_requests:
        # Part of the request's transaction: invisible to others until it
        # commits (SQLite's shared cache refuses the read outright).
        assert response.json()["seen"] == ("locked" if connection.vendor == "sqlite" else [])
    else:
        # Committed on its own, so a concurrent duplicate gets 409 at once.
        assert response.json()["seen"] == [Status.IN_PROGRESS]


def test_success_commits_the_views_writes_and_the_completed_record(client, atomic_requests):
    response = post(client, "/plain/", {"amount": 5})

    assert response.status_code == 201
    assert committed_charges() == 1
    assert committed_records() == [(digest("key-1"), Status.COMPLETED, 2, 201)]
    assert not connection.in_atomic_block


def test_view_exception_rolls_back_its_writes_and_releases_the_key(client, atomic_requests):
    with pytest.raises(ViewFailed):
        post(client, "/plain/", {"amount": 5, "fail": True})

    assert committed_charges() == 0
    assert committed_records() == []


@pytest.mark.parametrize("status", [500, 503, 429])
def test_released_status_rolls_back_its_writes_and_a_retry_runs(
    client, settings, atomic_requests, status
):
    # One operation whose first attempt fails transiently: the fingerprint
    # ignores the body, which here only tells the test view how to answer.
    settings.IDEMPOTENCY = {"FINGERPRINT": lambda request: "one-operation"}

    failed = post(client, "/plain/", {"amount": 5, "status": status})

    assert failed.status_code == status
    assert committed_charges() == 0
    assert committed_records() == []

    retried = post(client, "/plain/", {"amount": 7, "status": 201})

    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried
    assert committed(f"SELECT amount FROM {CHARGES}") == [(7,)]
    assert committed_records() == [(digest("key-1"), Status.COMPLETED, 2, 201)]


def test_superseded_worker_gets_409_and_commits_nothing(client):
    # ATOMIC_REQUESTS off only: with it on, the claim is uncommitted while the
    # view runs, so no other request can see the record, let alone take it over.
    response = post(client, "/superseded/", {"amount": 5})

    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["type"].endswith(":request-superseded")
    assert response["Retry-After"]
    assert committed_charges() == 0
    # The taker's claim, untouched: taken over at version 2, still running.
    assert committed_records() == [(digest("key-1"), Status.IN_PROGRESS, 2, None)]


@pytest.mark.skipif(
    connection.vendor == "mysql",
    reason="InnoDB checks foreign keys at once, never at COMMIT: no commit-time failure to test",
)
def test_failed_commit_leaves_no_writes_and_no_record(client, atomic_requests):
    with pytest.raises(IntegrityError) as raised:
        post(client, "/commit-fails/", {"amount": 5})

    # The view returned; the failure came from the COMMIT (Django's, or the
    # one PostgreSQL's store sends with the completion).
    assert any(entry.name in ("commit", "_complete_and_end") for entry in raised.traceback)
    assert committed_charges() == 0
    assert committed_records() == []  # released: a retry runs cleanly
    assert post(client, "/plain/", {"amount": 5}).status_code == 201
    assert committed_records() == [(digest("key-1"), Status.COMPLETED, 2, 201)]
