"""Async views through Django's AsyncClient: the rows of contract section 3
that the in-process client can reach, and waiting (section 11). The same rows
under a real ASGI server: tests/uvicorn.

AsyncClient runs each store unit (``sync_to_async(thread_sensitive=True)``)
in the test's own thread, on the test's connection and transaction.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection, connections
from django.test import AsyncClient
from django.test.utils import CaptureQueriesContext

from idempotency.models import IdempotencyRecord, Status
from idempotency.stores import StoredResponse, get_store
from tests.test_http import assert_problem, claim_in_progress
from tests.testapp.models import Charge

pytestmark = pytest.mark.django_db

ASYNC_VIEWS = ["/async-charge/", "/async-charge-class/"]


def post(path: str, body: dict[str, Any] | None = None, key: str | None = "async-1") -> Any:
    headers = {} if key is None else {"Idempotency-Key": key}
    return async_to_sync(AsyncClient().post)(
        path, json.dumps(body or {"amount": 5}), content_type="application/json", headers=headers
    )


def queries_of(call: Any) -> tuple[Any, int]:
    """``call()``'s answer and how many queries it sent on the test's connection."""
    with CaptureQueriesContext(connection) as captured:
        answer = call()
    return answer, len(captured)


@pytest.mark.parametrize("path", ASYNC_VIEWS)
def test_a_duplicate_of_a_running_request_is_409_with_retry_after(path: str) -> None:
    claim_in_progress(path, key="async-1")

    response = post(path)

    assert_problem(response, 409, "request-in-progress")
    assert response["Retry-After"] == "1"
    assert Charge.objects.count() == 0


@pytest.mark.parametrize("path", ASYNC_VIEWS)
def test_another_body_while_the_first_runs_is_422(path: str) -> None:
    claim_in_progress(path, key="async-1")

    assert_problem(post(path, {"amount": 6}), 422, "key-reused")
    assert Charge.objects.count() == 0


@pytest.mark.parametrize("path", ASYNC_VIEWS)
def test_an_async_view_that_raises_propagates_and_releases_the_key(path: str) -> None:
    from tests.testapp.views_async import AsyncViewFailed

    with pytest.raises(AsyncViewFailed):
        post(path, {"amount": 5, "fail": True})

    assert not IdempotencyRecord.objects.exists()
    assert post(path, {"amount": 7}).status_code == 201  # the key is free again


@pytest.mark.parametrize("path", ASYNC_VIEWS)
def test_an_async_view_answering_5xx_is_released_and_runs_again(path: str) -> None:
    body = {"amount": 5, "status": 503}

    first, second = post(path, body), post(path, body)

    assert first.status_code == second.status_code == 503
    assert "Idempotent-Replayed" not in second
    assert second.json()["amount"] == 5  # the view's own answer, not a problem
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.parametrize("path", ASYNC_VIEWS)
@pytest.mark.parametrize("bad_key", ["", "x" * 256, "first, second"])
def test_a_bad_key_is_400_and_the_async_view_does_not_run(path: str, bad_key: str) -> None:
    assert_problem(post(path, key=bad_key), 400, "key-invalid")
    assert Charge.objects.count() == 0


def test_no_key_for_an_async_view_that_requires_one_is_400() -> None:
    assert_problem(post("/async-required/", key=None), 400, "key-missing")
    assert Charge.objects.count() == 0


# Waiting (contract section 11)


def test_a_waiting_duplicate_replays_the_first_requests_answer_once_it_completes() -> None:
    claim = claim_in_progress("/async-waiting/", key="async-1")
    stored = StoredResponse(201, {"Content-Type": "application/json"}, b'{"id": "first"}')

    async def duplicate_and_first_completing(captured: CaptureQueriesContext) -> Any:
        duplicate = asyncio.ensure_future(AsyncClient().post(
            "/async-waiting/", json.dumps({"amount": 5}), content_type="application/json",
            headers={"Idempotency-Key": "async-1"},
        ))  # fmt: skip
        # The first request completes only once the duplicate has claimed (the
        # store's units run one at a time, in the test's thread).
        while not captured.captured_queries and not duplicate.done():
            await asyncio.sleep(0.01)
        assert not duplicate.done()
        await sync_to_async(get_store().finish)(claim, stored, lambda: None)
        return await duplicate

    # The test thread's connection itself, not the proxy that the event loop's
    # thread would resolve to a connection of its own.
    with CaptureQueriesContext(connections["default"]) as captured:
        response = async_to_sync(duplicate_and_first_completing)(captured)

    assert response.status_code == 201
    assert response["Idempotent-Replayed"] == "true"
    assert response.content == b'{"id": "first"}'
    assert Charge.objects.count() == 0  # the duplicate never ran the view
    assert IdempotencyRecord.objects.get().status == Status.COMPLETED


def test_a_waiting_duplicate_still_running_at_the_end_of_its_wait_is_409() -> None:
    claim_in_progress("/async-charge/", key="at-once")
    claim_in_progress("/async-short-wait/", key="waits")

    at_once, at_once_queries = queries_of(lambda: post("/async-charge/", key="at-once"))
    waited, waited_queries = queries_of(lambda: post("/async-short-wait/", key="waits"))

    for response in (at_once, waited):
        assert_problem(response, 409, "request-in-progress")
        assert response["Retry-After"] == "1"
    assert waited_queries > at_once_queries  # it claimed again while it waited
    assert Charge.objects.count() == 0


def test_another_body_is_422_at_once_even_for_a_view_that_waits() -> None:
    claim_in_progress("/async-charge/", key="plain")
    claim_in_progress("/async-waiting/", key="waiting")

    plain, plain_queries = queries_of(lambda: post("/async-charge/", {"amount": 6}, "plain"))
    waiting, waiting_queries = queries_of(lambda: post("/async-waiting/", {"amount": 6}, "waiting"))

    assert_problem(plain, 422, "key-reused")
    assert_problem(waiting, 422, "key-reused")
    assert waiting_queries == plain_queries  # one claim: no polling for another body
