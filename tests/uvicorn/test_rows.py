"""Every store-dependent row of contract section 3, for async views served by
a real uvicorn (contract section 11): the ORM never runs on the event loop,
so the server log never shows ``SynchronousOnlyOperation``."""

from __future__ import annotations

import functools
import json
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from idempotency.keys import digest
from idempotency.models import IdempotencyRecord, Status
from tests.concurrency.race import check_race, run_together
from tests.servers import wait_until
from tests.testapp.models import Charge

pytestmark = [pytest.mark.server_process, pytest.mark.django_db(transaction=True)]

ASYNC_VIEWS = ["/async-charge/", "/async-charge-class/"]
CONCURRENT = 32


def key() -> str:
    return str(uuid.uuid4())


@pytest.fixture(autouse=True)
def no_synchronous_only_operation(asgi, request):
    """After each test: nothing the server logged meanwhile says the ORM ran
    on the event loop."""
    start = len(asgi.log())
    yield
    if not request.node.name.startswith("test_the_log_check"):
        assert "SynchronousOnlyOperation" not in asgi.log()[start:]


@pytest.mark.parametrize("path", ASYNC_VIEWS)
def test_a_new_key_runs_the_async_view_once_and_stores_its_response(asgi, path):
    sent = key()

    first = asgi.server.request("POST", path, {"amount": 5}, sent)

    assert (first.status, first.replayed) == (201, False)
    assert first.headers["location"] == f"/charges/{first.json['id']}"
    assert Charge.objects.filter(pk=first.json["id"]).exists()
    record = IdempotencyRecord.objects.get(key=digest(sent))
    assert (record.status, record.response_status, record.version) == (Status.COMPLETED, 201, 2)


@pytest.mark.parametrize("path", ASYNC_VIEWS)
def test_the_same_request_again_replays_without_running_the_async_view(asgi, path):
    sent = key()
    first = asgi.server.request("POST", path, {"amount": 5}, sent)

    again = asgi.server.request("POST", path, {"amount": 5}, sent)

    assert (again.status, again.replayed, again.body) == (201, True, first.body)
    assert again.headers["location"] == first.headers["location"]
    assert Charge.objects.count() == 1


@pytest.mark.parametrize("path", ASYNC_VIEWS)
def test_the_same_key_with_another_body_is_422_and_the_async_view_does_not_run(asgi, path):
    sent = key()
    asgi.server.request("POST", path, {"amount": 5}, sent)

    other = asgi.server.request("POST", path, {"amount": 6}, sent)

    assert (other.status, other.problem_slug) == (422, "key-reused")
    assert Charge.objects.count() == 1


@pytest.mark.parametrize("path", ASYNC_VIEWS)
def test_a_duplicate_while_the_first_runs_is_409_and_another_body_422(asgi, path):
    sent, gate = key(), uuid.uuid4().hex
    body = {"amount": 5, "gate": gate}
    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            first = pool.submit(asgi.server.request, "POST", path, body, sent)
            asgi.gates.entered(gate, asgi.server)

            duplicate = asgi.server.request("POST", path, body, sent)
            other = asgi.server.request("POST", path, {**body, "amount": 6}, sent)
            still_running = not first.done()
        finally:
            asgi.gates.open(gate)
        original = first.result(timeout=30)

    assert still_running
    assert (duplicate.status, duplicate.problem_slug) == (409, "request-in-progress")
    assert int(duplicate.headers["retry-after"]) > 0
    assert (other.status, other.problem_slug) == (422, "key-reused")
    assert (original.status, original.replayed) == (201, False)
    assert Charge.objects.count() == 1
    replay = asgi.server.request("POST", path, body, sent)
    assert (replay.status, replay.replayed, replay.body) == (201, True, original.body)


@pytest.mark.parametrize("path", ASYNC_VIEWS)
def test_an_async_view_that_raises_releases_the_key_and_keeps_no_write(asgi, path):
    sent = key()

    failed = asgi.server.request("POST", path, {"amount": 5, "fail": True}, sent)

    assert failed.status == 500
    assert "AsyncViewFailed" in asgi.log()  # Django's traceback reaches the log
    assert not IdempotencyRecord.objects.filter(key=digest(sent)).exists()
    assert Charge.objects.count() == 0  # rolled back with the claim's transaction
    # Released: the key is free for any request, which runs the view.
    retry = asgi.server.request("POST", path, {"amount": 7}, sent)
    assert (retry.status, retry.replayed) == (201, False)
    assert Charge.objects.get().amount == 7


@pytest.mark.parametrize("path", ASYNC_VIEWS)
@pytest.mark.parametrize("status", [503, 429])
def test_an_async_view_answering_5xx_or_a_release_status_is_not_stored(asgi, path, status):
    sent = key()
    body = {"amount": 5, "status": status}

    first = asgi.server.request("POST", path, body, sent)
    second = asgi.server.request("POST", path, body, sent)

    assert first.status == second.status == status
    assert not first.replayed and not second.replayed
    assert first.json["id"] != second.json["id"]  # the view ran again
    assert not IdempotencyRecord.objects.filter(key=digest(sent)).exists()
    assert Charge.objects.count() == 0  # its writes rolled back with the release


@pytest.mark.parametrize("path", ASYNC_VIEWS)
@pytest.mark.parametrize(
    "bad_key",
    ["", "x" * 256, "first, second", "caf\u00e9"],
    ids=["empty", "too-long", "a-list", "not-ascii"],
)
def test_a_bad_key_is_400_and_the_async_view_does_not_run(asgi, path, bad_key):
    answer = asgi.server.request("POST", path, {"amount": 5}, bad_key)

    assert (answer.status, answer.problem_slug) == (400, "key-invalid")
    assert Charge.objects.count() == 0
    assert not IdempotencyRecord.objects.exists()


def test_no_key_for_an_async_view_that_requires_one_is_400(asgi):
    answer = asgi.server.request("POST", "/async-required/", {"amount": 5})

    assert (answer.status, answer.problem_slug) == (400, "key-missing")
    assert Charge.objects.count() == 0


@pytest.mark.parametrize("path", ASYNC_VIEWS)
def test_no_key_runs_the_async_view_without_a_record(asgi, path):
    answer = asgi.server.request("POST", path, {"amount": 5})

    assert (answer.status, answer.replayed) == (201, False)
    assert Charge.objects.count() == 1
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.parametrize("path", ASYNC_VIEWS)
def test_32_concurrent_duplicates_run_the_async_view_once(asgi, path):
    sent = key()
    body = {"amount": 5, "sleep": 0.4}

    answers = run_together(
        [functools.partial(asgi.server.request, "POST", path, body, sent)] * CONCURRENT
    )

    original = check_race(answers, f"uvicorn {path} ({connection.vendor})")
    assert Charge.objects.count() == 1
    assert Charge.objects.get().pk == original.json["id"]
    record = IdempotencyRecord.objects.get(key=digest(sent))
    assert (record.status, record.version) == (Status.COMPLETED, 2)


def test_the_log_check_sees_the_orm_called_on_the_event_loop(asgi):
    start = len(asgi.log())

    """The check after each test is not vacuous: this mistake shows in the log."""
    answer = asgi.server.request("GET", "/orm-on-the-event-loop/")

    assert answer.status == 500
    assert "SynchronousOnlyOperation" in asgi.log()[start:]


@pytest.mark.parametrize("path", ASYNC_VIEWS)
def test_a_client_that_disconnects_while_the_async_view_runs_releases_the_key(asgi, path):
    """Django cancels an async view whose client went away: nothing is kept,
    and the key is free at once, not held until LOCK_TIMEOUT."""
    sent, gate = key(), uuid.uuid4().hex
    body = json.dumps({"amount": 5, "gate": gate}).encode()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Idempotency-Key: {sent}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", asgi.server.port), timeout=30) as client:
        client.sendall(request)
        asgi.gates.entered(gate, asgi.server)
        assert IdempotencyRecord.objects.get(key=digest(sent)).status == Status.IN_PROGRESS
    # The client is gone; the gate stays shut, so only a cancellation ends the view.

    wait_until(
        lambda: not IdempotencyRecord.objects.filter(key=digest(sent)).exists(),
        30, "the record released", asgi.server,
    )  # fmt: skip
    assert Charge.objects.count() == 0
    retry = asgi.server.request("POST", path, {"amount": 5}, sent)
    assert (retry.status, retry.replayed) == (201, False)
