"""Every signal, sent by the engine with its arguments; a broken receiver is harmless."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.dispatch import Signal

from idempotency import signals
from idempotency.keys import digest, shown
from idempotency.models import IdempotencyRecord
from tests.test_http import claim_in_progress, send
from tests.testapp.models import Charge

pytestmark = pytest.mark.django_db

BODY = {"amount": 5}


@contextmanager
def received(signal: Signal) -> Iterator[list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        calls.append({"sender": sender, **kwargs})

    signal.connect(receiver)
    try:
        yield calls
    finally:
        signal.disconnect(receiver)


def test_response_stored_is_sent_once_with_scope_key_and_status(
    client, django_capture_on_commit_callbacks
):
    # Sent on commit: the test's own transaction never commits, so the
    # callbacks are captured and run as a commit would run them.
    with (
        received(signals.response_stored) as calls,
        django_capture_on_commit_callbacks(execute=True),
    ):
        send(client, "/plain/", BODY, key="k-stored")
        assert calls == []  # not before the commit

    assert len(calls) == 1
    call = calls[0]
    assert call["sender"] is IdempotencyRecord
    assert (call["scope"], call["key"], call["status"]) == ("anonymous", (digest("k-stored")), 201)
    assert call["replayable"] is True
    assert call["request"].path == "/plain/"


def test_response_stored_says_when_the_response_was_not_kept(
    client, django_capture_on_commit_callbacks
):
    with (
        received(signals.response_stored) as calls,
        django_capture_on_commit_callbacks(execute=True),
    ):
        send(client, "/plain/", {"kind": "stream"}, key="k-stream")

    assert [(c["status"], c["replayable"]) for c in calls] == [(201, False)]


def test_response_stored_is_not_sent_when_the_view_is_released(client):
    with received(signals.response_stored) as calls:
        send(client, "/plain/", {"status": 503}, key="k-released")

    assert calls == []


def test_response_replayed_is_sent_for_a_replay_only(client):
    send(client, "/plain/", BODY, key="k-replay")
    with received(signals.response_replayed) as calls:
        response = send(client, "/plain/", BODY, key="k-replay")

    assert response["Idempotent-Replayed"] == "true"
    assert [(c["scope"], c["key"], c["status"]) for c in calls] == [
        ("anonymous", (digest("k-replay")), 201)
    ]


def test_key_reused_is_sent_for_a_body_mismatch(client):
    send(client, "/plain/", BODY, key="k-reused")
    with received(signals.key_reused) as calls:
        response = send(client, "/plain/", {"amount": 6}, key="k-reused")

    assert response.status_code == 422
    assert [(c["scope"], c["key"]) for c in calls] == [("anonymous", (digest("k-reused")))]


def test_request_in_progress_is_sent_for_a_concurrent_duplicate(client):
    claim_in_progress("/plain/", BODY, key="k-running")
    with received(signals.request_in_progress) as calls:
        response = send(client, "/plain/", BODY, key="k-running")

    assert response.status_code == 409
    assert [(c["scope"], c["key"]) for c in calls] == [("anonymous", (digest("k-running")))]


@pytest.mark.parametrize("body", [{"status": 500}, {"status": 429}, {"fail": True}])
def test_record_released_is_sent_when_nothing_is_stored(client, body):
    client.raise_request_exception = False  # the view that raises answers Django's 500
    with received(signals.record_released) as calls:
        send(client, "/plain/", body, key="k-release")

    assert [(c["scope"], c["key"]) for c in calls] == [("anonymous", (digest("k-release")))]
    assert not IdempotencyRecord.objects.exists()


def test_lock_taken_over_is_sent_when_a_dead_workers_lock_expired(client, settings):
    settings.IDEMPOTENCY = {"LOCK_TIMEOUT": 0}
    claim_in_progress("/plain/", BODY, key="k-dead")
    with received(signals.lock_taken_over) as calls:
        response = send(client, "/plain/", BODY, key="k-dead")

    assert response.status_code == 201
    assert [(c["scope"], c["key"]) for c in calls] == [("anonymous", (digest("k-dead")))]


def test_a_receiver_that_raises_never_breaks_the_request(
    client, caplog, django_capture_on_commit_callbacks
):
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    signals.response_stored.connect(broken)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = send(client, "/plain/", BODY, key="k-broken")
    finally:
        signals.response_stored.disconnect(broken)

    assert response.status_code == 201
    assert json.loads(response.content)["amount"] == 5
    assert Charge.objects.count() == 1
    assert IdempotencyRecord.objects.get().status == "completed"
    failures = [r for r in caplog.records if "signal receiver" in r.getMessage()]
    assert len(failures) == 1
    assert shown(digest("k-broken")) in failures[0].getMessage()


@pytest.mark.django_db(transaction=True)
def test_response_stored_is_sent_after_a_real_commit(client):
    seen_committed: list[bool] = []

    def receiver(sender: Any, key: str, **kwargs: Any) -> None:
        seen_committed.append(IdempotencyRecord.objects.get(key=key).status == "completed")

    signals.response_stored.connect(receiver)
    try:
        send(client, "/plain/", BODY, key="k-committed")
    finally:
        signals.response_stored.disconnect(receiver)

    assert seen_committed == [True]
