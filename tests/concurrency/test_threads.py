"""Concurrent duplicates in real threads, each with its own database connection."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from idempotency.keys import digest
from idempotency.models import IdempotencyRecord, Status
from tests.concurrency.race import (
    REQUESTS,
    ROUNDS,
    Answer,
    check_race,
    client_answer,
    run_together,
)
from tests.testapp.models import Charge

pytestmark = pytest.mark.concurrency

SLOW = {"amount": 5, "sleep": 0.4}


def poster(client: Client, key: str, body: dict[str, Any]) -> Callable[[], Answer]:
    def post() -> Answer:
        response = client.post(
            "/plain/",
            data=json.dumps(body),
            content_type="application/json",
            headers={"Idempotency-Key": key},
        )
        return client_answer(response)

    return post


def race_rounds(label: str) -> None:
    for round_ in range(ROUNDS):
        key = str(uuid.uuid4())
        before = Charge.objects.count()
        answers = run_together([poster(Client(), key, SLOW) for _ in range(REQUESTS)])
        original = check_race(answers, f"{label} ({connection.vendor}) round {round_ + 1}")
        assert Charge.objects.count() == before + 1
        charge = Charge.objects.get(pk=original.json["id"])
        record = IdempotencyRecord.objects.get(key=digest(key))
        assert (record.status, record.version) == (Status.COMPLETED, 2)
        assert bytes(record.response_body) == original.body
        assert charge.amount == SLOW["amount"]
        later = poster(Client(), key, SLOW)()
        assert (later.status, later.replayed, later.body) == (201, True, original.body)
        assert Charge.objects.count() == before + 1


def in_atomic_block_of_a_thread_request() -> bool:
    [answer] = run_together([lambda: client_answer(Client().get("/process/"))])
    return bool(answer.json["in_atomic_block"])


def test_concurrent_duplicates_run_the_view_once_and_get_409_or_replay(transactional_db):
    assert not in_atomic_block_of_a_thread_request()
    race_rounds("threads, ATOMIC_REQUESTS off")


def test_concurrent_duplicates_run_the_view_once_with_atomic_requests(
    transactional_db, atomic_requests_on
):
    assert in_atomic_block_of_a_thread_request()
    race_rounds("threads, ATOMIC_REQUESTS on")


@pytest.mark.parametrize("atomic", [False, True], ids=["atomic-off", "atomic-on"])
def test_the_same_key_from_two_users_at_once_runs_the_view_once_for_each(
    transactional_db, request, atomic
):
    if atomic:
        request.getfixturevalue("atomic_requests_on")
    users = [get_user_model().objects.create_user(f"user{n}", password="x") for n in (1, 2)]
    key = str(uuid.uuid4())
    clients = []
    for n in range(REQUESTS):
        client = Client()
        client.force_login(users[n % 2])
        clients.append(client)

    answers = run_together([poster(client, key, SLOW) for client in clients])

    assert Charge.objects.count() == 2
    originals = []
    for n, user in enumerate(users):
        mine = answers[n::2]
        original = check_race(
            mine,
            f"threads, two scopes, {request.node.callspec.id} ({connection.vendor}) user {n + 1}",
        )
        originals.append(original)
        record = IdempotencyRecord.objects.get(scope=f"user:{user.pk}", key=digest(key))
        assert bytes(record.response_body) == original.body
    assert originals[0].json["id"] != originals[1].json["id"]
    assert IdempotencyRecord.objects.filter(key=digest(key)).count() == 2
