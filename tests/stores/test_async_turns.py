"""Concurrent async requests in one event loop (AsyncClient under an outer
``async_to_sync``) share one worker thread, so one connection: they take
turns on it from claim to commit (``idempotency.turns``), on each store.

Without the turns, a request's claim, writes and stored outcome ran inside
another's atomic block: one request's failure rolled back another's answered
write, and a commit could end the wrong block. Each test acts once a request
is seen waiting for its turn (``tests.turns``), never after a sleep.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import AsyncClient
from django.urls import path

from idempotency import idempotent, idempotent_function
from idempotency.stores.database import DatabaseRecordStore
from idempotency.stores.redis import RedisRecordStore
from tests.stores.conftest import Backend
from tests.testapp.models import Charge
from tests.turns import GATES, PATIENCE, gate, waits_seen

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls(__name__),
    pytest.mark.parametrize("record_store", ["database", "redis"], indirect=True),
]


class ViewFailed(Exception):
    pass


@idempotent
async def turns_view(request: HttpRequest) -> HttpResponse:
    """Writes a charge, then as the body asks: waits at a gate, lets the
    other requests run (``yield``), fails."""
    body = json.loads(request.body)
    charge = await Charge.objects.acreate(amount=1, label=body["label"])
    if body.get("nested"):
        await sync_to_async(nested_charge)(body["nested"])
    if body.get("gate"):
        await GATES[body["gate"]].pass_through()
    for _ in range(body.get("yield", 0)):
        await asyncio.sleep(0)
    if body.get("fail"):
        raise ViewFailed("the view failed after writing")
    return JsonResponse({"id": charge.pk, "label": charge.label}, status=201)


@idempotent_function("label")
def nested_charge(label: str) -> int:
    """An idempotent call made by the view: part of its request."""
    return Charge.objects.create(amount=1, label=label).pk


urlpatterns = [path("turns/", turns_view)]


def send(client: AsyncClient, key: str, **body: Any) -> Any:
    """A POST as a task of its own, running concurrently with the test."""
    return asyncio.ensure_future(client.post(
        "/turns/", body, content_type="application/json", headers={"Idempotency-Key": key}
    ))  # fmt: skip


def a_client() -> AsyncClient:
    # A view's exception is its own request's 500, not re-raised by every
    # request the client serves at that moment (the signal is global).
    return AsyncClient(raise_request_exception=False)


def committed_labels() -> list[str]:
    return sorted(Charge.objects.values_list("label", flat=True))


def test_the_first_fails_and_the_second_succeeds(record_store: Backend) -> None:
    async def scenario() -> tuple[int, int, bool]:
        client = a_client()
        with waits_seen() as waits, gate("first") as first_gate:
            first = send(client, "k-first", label="first", gate="first", fail=True)
            await first_gate.entered()  # the first holds its key, its write made
            second = send(client, "k-second", label="second")
            waited = await waits.reach(1)
            first_gate.open()
            return (await first).status_code, (await second).status_code, waited

    *statuses, waited = async_to_sync(scenario)()

    assert statuses == [500, 201]
    assert committed_labels() == ["second"]
    assert record_store.state("k-first") is None
    assert record_store.state("k-second") == ("completed", 2)
    assert waited


def test_the_first_succeeds_and_the_second_fails_after_it_answered(
    record_store: Backend,
) -> None:
    """The second fails after the first was answered: the second's rollback
    must not take the first's committed write and record with it."""

    async def scenario() -> tuple[int, int, bool]:
        client = a_client()
        with waits_seen() as waits, gate("first") as first_gate, gate("second") as second_gate:
            first = send(client, "k-first", label="first", gate="first")
            await first_gate.entered()
            second = send(client, "k-second", label="second", gate="second", fail=True)
            waited = await waits.reach(1)
            first_gate.open()
            first_status = (await first).status_code
            second_gate.open()  # the second fails only once the first has answered
            return first_status, (await second).status_code, waited

    *statuses, waited = async_to_sync(scenario)()

    assert statuses == [201, 500]
    assert committed_labels() == ["first"]
    assert record_store.state("k-first") == ("completed", 2)
    assert record_store.state("k-second") is None
    assert waited


FAILING = {1, 4, 6}


def test_eight_concurrent_requests_three_failing_commit_exactly_the_five(
    record_store: Backend,
) -> None:
    async def scenario() -> list[int]:
        client = a_client()
        requests = [
            send(client, f"k-{n}", label=f"r{n}", fail=n in FAILING, **{"yield": 5})
            for n in range(8)
        ]
        return [response.status_code for response in await asyncio.gather(*requests)]

    statuses = async_to_sync(scenario)()

    assert statuses == [500 if n in FAILING else 201 for n in range(8)]
    succeeded = [n for n in range(8) if n not in FAILING]
    assert committed_labels() == [f"r{n}" for n in succeeded]
    for n in range(8):
        expected = None if n in FAILING else ("completed", 2)
        assert record_store.state(f"k-{n}") == expected, n


def test_a_duplicate_sent_while_the_first_runs_gets_its_replay(record_store: Backend) -> None:
    """The duplicate waits for its turn, so it claims after the first
    committed: the replay, where a server with a thread per request answers
    409 at once."""

    async def scenario() -> tuple[Any, Any, bool]:
        client = a_client()
        with waits_seen() as waits, gate("first") as first_gate:
            first = send(client, "same", label="first", gate="first")
            await first_gate.entered()
            duplicate = send(client, "same", label="first", gate="first")
            waited = await waits.reach(1)
            first_gate.open()
            return await first, await duplicate, waited

    first, duplicate, waited = async_to_sync(scenario)()

    assert (first.status_code, duplicate.status_code) == (201, 201)
    assert duplicate["Idempotent-Replayed"] == "true"
    assert duplicate.content == first.content
    assert committed_labels() == ["first"]
    assert waited


def test_a_request_cancelled_while_it_waits_for_its_turn_ends_at_once(
    record_store: Backend,
) -> None:
    """Nothing of it ran: no claim to release, and the first is unaffected."""

    async def scenario() -> tuple[int, bool]:
        client = a_client()
        with waits_seen() as waits, gate("first") as first_gate:
            first = send(client, "k-first", label="first", gate="first")
            await first_gate.entered()
            second = send(client, "k-second", label="second")
            assert await waits.reach(1)
            second.cancel()  # its client went away while it waited
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(second, 5)  # at once: not after the first
            assert not first.done()
            first_gate.open()
            return (await first).status_code, second.cancelled()

    assert async_to_sync(scenario)() == (201, True)
    assert committed_labels() == ["first"]
    assert record_store.state("k-first") == ("completed", 2)
    assert record_store.state("k-second") is None


def test_an_idempotent_call_inside_the_view_keeps_its_requests_turn(
    record_store: Backend,
) -> None:
    """The nested call claims and finishes as part of the first request
    without waiting for it; its finish does not end the first's turn, so the
    second still waits until the first has rolled back (the nested write
    with it)."""

    async def scenario() -> tuple[int, int, bool]:
        client = a_client()
        with waits_seen() as waits, gate("first") as first_gate:
            first = send(client, "k-first", label="first", nested="nested", gate="first",
                         fail=True)  # fmt: skip
            await first_gate.entered()  # the nested call has finished
            second = send(client, "k-second", label="second")
            waited = await waits.reach(1)
            first_gate.open()
            return (await first).status_code, (await second).status_code, waited

    *statuses, waited = async_to_sync(scenario)()

    assert statuses == [500, 201]
    assert committed_labels() == ["second"]
    assert record_store.state("k-second") == ("completed", 2)
    assert waited


def test_a_request_cancelled_while_its_failure_is_examined_still_releases_its_turn(
    record_store: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client goes away while the store examines the view's failure (the
    unit before the release). The cancellation waits for that unit, and the
    release must still run: before, it was thrown at the release's step, so
    the key, the open transaction and the thread's turn stayed held, and
    every later request on the thread waited for ever."""
    examining, resume = threading.Event(), threading.Event()
    stores = (DatabaseRecordStore, RedisRecordStore)
    for store_class in stores:
        original = store_class.refused_durable_block

        def held(self: Any, claim: Any, error: BaseException, original: Any = original) -> bool:
            examining.set()
            assert resume.wait(PATIENCE)
            return bool(original(self, claim, error))

        monkeypatch.setattr(store_class, "refused_durable_block", held)

    async def scenario() -> tuple[bool, int]:
        client = a_client()
        first = send(client, "k-first", label="first", fail=True)
        assert await sync_to_async(examining.wait, thread_sensitive=False)(PATIENCE)
        first.cancel()  # held until the unit ends
        resume.set()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(first, PATIENCE)
        second = await asyncio.wait_for(send(client, "k-second", label="second"), PATIENCE)
        return first.cancelled(), second.status_code

    assert async_to_sync(scenario)() == (True, 201)
    assert committed_labels() == ["second"]
    assert record_store.state("k-first") is None
    assert record_store.state("k-second") == ("completed", 2)
