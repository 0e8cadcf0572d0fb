"""Contract section 3, the store-dependent rows, on every store (section 6:
"every row of section 3 holds as written"). The same test code for each: the
``record_store`` fixture picks the store through ``STORE``.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from idempotency.keys import digest
from idempotency.stores import Attempt, ClaimOutcome, StoredResponse, get_store
from tests.stores.conftest import Backend
from tests.test_http import assert_problem, claim_in_progress, send
from tests.testapp.models import Charge
from tests.testapp.views import ViewFailed

pytestmark = pytest.mark.django_db


def attempt(key: str = "key-1", scope: str = "anonymous", fingerprint: str = "f" * 64,
            atomic: bool = False) -> Attempt:  # fmt: skip
    return Attempt(
        scope=scope,
        key=digest(key),
        fingerprint=fingerprint,
        method="POST",
        path="/plain/",
        ttl=timedelta(hours=1),
        lock_for=timedelta(seconds=60),
        atomic=atomic,
    )


RESPONSE = StoredResponse(201, {"Content-Type": "application/json"}, b'{"id": 1}')


# New key, replay, another request


def test_a_new_key_runs_the_view_once_and_stores_its_response(
    client: Any, record_store: Backend
) -> None:
    response = send(client)

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert Charge.objects.count() == 1
    assert record_store.state("key-1") == ("completed", 2)


def test_the_same_request_again_is_replayed_and_the_view_does_not_run(
    client: Any, record_store: Backend
) -> None:
    first = send(client)

    again = send(client)

    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert again["Location"] == first["Location"]
    assert "X-Not-Replayed" not in again and "session-ish" not in again.cookies
    assert Charge.objects.count() == 1


def test_the_same_key_with_another_body_is_422_after_the_first_completed(
    client: Any, record_store: Backend
) -> None:
    send(client, body={"amount": 5})

    assert_problem(send(client, body={"amount": 6}), 422, "key-reused")
    assert Charge.objects.count() == 1


def test_the_same_key_with_another_body_is_422_while_the_first_runs(
    client: Any, record_store: Backend
) -> None:
    claim_in_progress(body={"amount": 5})

    assert_problem(send(client, body={"amount": 6}), 422, "key-reused")
    assert Charge.objects.count() == 0
    assert record_store.state("key-1") == ("in_progress", 1)


def test_the_same_request_while_the_first_runs_is_409_with_retry_after(
    client: Any, record_store: Backend
) -> None:
    claim_in_progress()

    response = send(client)

    assert_problem(response, 409, "request-in-progress")
    assert response["Retry-After"] == "1"
    assert Charge.objects.count() == 0
    assert record_store.state("key-1") == ("in_progress", 1)


def test_the_in_progress_answer_says_how_long_the_lock_still_runs(
    record_store: Backend,
) -> None:
    store = get_store()
    store.claim(attempt())

    duplicate = store.claim(attempt())

    assert duplicate.outcome is ClaimOutcome.IN_PROGRESS
    assert duplicate.lock_remaining is not None
    # At most LOCK_TIMEOUT, give or take the clock's resolution (SQLite's is coarse).
    assert timedelta(seconds=50) < duplicate.lock_remaining < timedelta(seconds=61)


# Released: the view raised, or answered 5xx or a RELEASE_STATUSES status


def test_a_view_that_raises_releases_the_key_and_a_retry_runs_it_again(
    client: Any, record_store: Backend
) -> None:
    with pytest.raises(ViewFailed):
        send(client, body={"amount": 5, "fail": True})
    assert record_store.state("key-1") is None

    with pytest.raises(ViewFailed):
        send(client, body={"amount": 5, "fail": True})
    assert Charge.objects.count() == 0  # both executions rolled back


def test_a_view_opening_a_durable_block_is_misconfigured_and_released(
    client: Any, record_store: Backend
) -> None:
    first = send(client, "/durable/", key="durable")
    again = send(client, "/durable/", key="durable")

    assert "atomic=False" in assert_problem(first, 500, "misconfigured")["detail"]
    assert_problem(again, 500, "misconfigured")  # released, not stuck in progress
    assert record_store.state("durable") is None
    assert Charge.objects.count() == 0


@pytest.mark.parametrize("status", [500, 503, 409, 429])
def test_a_5xx_or_release_status_is_not_stored_and_a_retry_runs_the_view(
    client: Any, record_store: Backend, status: int
) -> None:
    body = {"amount": 5, "status": status}
    assert send(client, body=body).status_code == status
    assert record_store.state("key-1") is None

    again = send(client, body=body)

    assert again.status_code == status
    assert "Idempotent-Replayed" not in again  # the view ran again
    assert Charge.objects.count() == 0  # and a released call's writes rolled back


# The lock ran out; the record expired


def test_after_the_lock_timeout_a_retry_takes_the_record_over_and_runs_the_view(
    client: Any, record_store: Backend
) -> None:
    claim_in_progress()
    assert send(client).status_code == 409

    record_store.expire_lock("key-1")
    response = send(client)

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert Charge.objects.count() == 1
    assert record_store.state("key-1") == ("completed", 3)  # claimed, taken over, completed
    assert send(client)["Idempotent-Replayed"] == "true"


def test_a_record_past_its_expiry_is_as_if_absent(client: Any, record_store: Backend) -> None:
    send(client, body={"amount": 5})
    record_store.expire_record("key-1")

    response = send(client, body={"amount": 6})  # even another request: the key is free

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert Charge.objects.count() == 2


# Fencing: a stale worker changes nothing


# Outside a test transaction: PostgreSQL's completion refuses a stale writer
# by raising, which aborts an enclosing transaction.
@pytest.mark.django_db(transaction=True)
def test_a_stale_worker_after_a_takeover_can_neither_store_nor_release(
    record_store: Backend,
) -> None:
    store = get_store()
    stale = store.claim(attempt())
    record_store.expire_lock("key-1")
    owner = store.claim(attempt())
    assert (owner.outcome, owner.taken_over) == (ClaimOutcome.ACQUIRED, True)

    assert store.finish(stale, StoredResponse(200, {}, b"stale"), lambda: None) is False
    assert store.release(stale) is False
    assert record_store.state("key-1") == ("in_progress", 2)

    assert store.finish(owner, RESPONSE, lambda: None) is True
    replay = store.claim(attempt())
    assert replay.outcome is ClaimOutcome.REPLAY
    assert replay.response == RESPONSE


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
def test_a_stale_worker_does_not_commit_its_database_writes(record_store: Backend) -> None:
    store = get_store()
    stale = store.claim(attempt(atomic=True))  # the call's transaction opens
    Charge.objects.create(amount=1, label="stale")

    def retry_after_the_lock_ran_out() -> None:
        record_store.expire_lock("key-1")
        taken = store.claim(attempt())
        assert taken.taken_over
        assert store.finish(taken, RESPONSE, lambda: None)

    thread = threading.Thread(target=retry_after_the_lock_ran_out)
    thread.start()
    thread.join(30)

    assert store.finish(stale, StoredResponse(201, {}, b"stale"), lambda: None) is False
    assert Charge.objects.count() == 0  # rolled back
    assert get_store().claim(attempt()).response == RESPONSE


# Scopes


# Hash-tag braces and glob characters: none may reach another scope's record.
HOSTILE_SCOPES = ["user:1", "user:1}", "{user:1}", "user:*", "user:?", "user:[1]", "user:1\\", "ü"]


def test_the_same_key_in_another_scope_is_an_independent_record(record_store: Backend) -> None:
    store = get_store()
    claims = [store.claim(attempt(scope=scope)) for scope in HOSTILE_SCOPES]
    assert all(claim.outcome is ClaimOutcome.ACQUIRED for claim in claims)
    assert store.finish(claims[0], RESPONSE, lambda: None)

    for scope in HOSTILE_SCOPES[1:]:
        assert store.claim(attempt(scope=scope)).outcome is ClaimOutcome.IN_PROGRESS
    assert store.claim(attempt(scope="user:1")).response == RESPONSE


# Every door: an async view runs its store calls in a worker thread


def test_an_async_view_runs_once_and_replays(record_store: Backend) -> None:
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    post = async_to_sync(AsyncClient().post)
    headers = {"Idempotency-Key": "async-key"}

    first = post("/async/", {"amount": 3}, content_type="application/json", headers=headers)
    second = post("/async/", {"amount": 3}, content_type="application/json", headers=headers)
    other = post("/async/", {"amount": 4}, content_type="application/json", headers=headers)

    assert first.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    assert_problem(other, 422, "key-reused")
    assert Charge.objects.count() == 1
    assert record_store.state("async-key") == ("completed", 2)


# ATOMIC_REQUESTS: the outcome is stored once the request's transaction commits


@pytest.mark.django_db(transaction=True)
def test_with_atomic_requests_a_new_key_runs_once_and_replays(
    client: Any, record_store: Backend, atomic_requests: bool
) -> None:
    first = send(client)
    again = send(client)

    assert first.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert Charge.objects.count() == 1
    assert record_store.state("key-1") == ("completed", 2)


@pytest.mark.django_db(transaction=True)
def test_with_atomic_requests_a_view_that_raises_is_released(
    client: Any, record_store: Backend, atomic_requests: bool
) -> None:
    with pytest.raises(ViewFailed):
        send(client, body={"amount": 5, "fail": True})

    assert record_store.state("key-1") is None
    assert Charge.objects.count() == 0
