"""Contract section 3 (HTTP behaviour) and 4 (errors), row by row, over HTTP.

Requests go through Django's test client to ``tests/testapp`` views; each view
writes a ``Charge``, so ``Charge.objects.count()`` is how often it ran.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from django.db.models import F
from django.db.utils import load_backend
from django.test import RequestFactory

from idempotency.conf import idempotency_settings
from idempotency.fingerprint import compute_fingerprint
from idempotency.http import with_principal
from idempotency.keys import digest, shown
from idempotency.models import IdempotencyRecord, Status
from idempotency.stores import Attempt, Claim, ClaimOutcome, get_store
from tests.test_store import set_time
from tests.testapp.models import Charge
from tests.testapp.views import ViewFailed

pytestmark = pytest.mark.django_db

PLAIN = "/plain/"
PROBLEM_FIELDS = {"type", "title", "status", "detail"}


def send(
    client: Any,
    path: str = PLAIN,
    body: dict[str, Any] | None = None,
    *,
    key: str | None = "key-1",
    method: str = "post",
    headers: dict[str, str] | None = None,
) -> Any:
    """A JSON request with an Idempotency-Key header (none when ``key`` is None)."""
    all_headers = dict(headers or {})
    if key is not None:
        all_headers["Idempotency-Key"] = key
    payload = json.dumps({"amount": 5} if body is None else body)
    return getattr(client, method)(
        path, payload, content_type="application/json", headers=all_headers
    )


def assert_problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    """Contract section 4: RFC 9457 problem details, never a bare 500."""
    assert response.status_code == status
    assert response["Content-Type"] == "application/problem+json"
    problem: dict[str, Any] = json.loads(response.content)
    assert set(problem) == PROBLEM_FIELDS
    assert problem["type"] == f"tag:django-idempotency,2026:{slug}"
    assert problem["status"] == status
    assert isinstance(problem["title"], str) and problem["title"]
    assert isinstance(problem["detail"], str) and problem["detail"]
    return problem


def claim_in_progress(
    path: str = PLAIN,
    body: dict[str, Any] | None = None,
    *,
    key: str = "key-1",
    scope: str = "anonymous",
    principal: str = "anonymous",
) -> Claim:
    """Claim a key as a first request would just before its view runs.

    The attempt is built the way the engine builds it (the configured
    FINGERPRINT, LOCK_TIMEOUT and TTL), so a later identical HTTP request has
    the same fingerprint.
    """
    payload = json.dumps({"amount": 5} if body is None else body)
    request = RequestFactory().post(path, payload, content_type="application/json")
    attempt = Attempt(
        scope=scope,
        key=digest(key),
        fingerprint=with_principal(
            compute_fingerprint(request, idempotency_settings.FINGERPRINT), principal, scope
        ),
        method="POST",
        path=path,
        ttl=idempotency_settings.TTL,
        lock_for=idempotency_settings.LOCK_TIMEOUT,
        atomic=False,  # the claim only: no transaction left open
    )
    claim = get_store().claim(attempt)
    assert claim.outcome is ClaimOutcome.ACQUIRED
    return claim


# Safe methods and missing keys


@pytest.mark.parametrize("method", ["get", "head", "options", "trace"])
def test_safe_method_passes_through_and_creates_no_record(client: Any, method: str) -> None:
    for _ in range(2):
        response = getattr(client, method)(PLAIN, headers={"Idempotency-Key": "key-1"})
        assert response.status_code == 201
        assert "Idempotent-Replayed" not in response

    assert Charge.objects.count() == 2
    assert not IdempotencyRecord.objects.exists()


def test_no_key_when_not_required_runs_the_view_and_creates_no_record(client: Any) -> None:
    first = send(client, key=None)
    second = send(client, key=None)

    assert first.status_code == second.status_code == 201
    assert first.cookies["session-ish"].value == "secret"
    assert Charge.objects.count() == 2
    assert not IdempotencyRecord.objects.exists()


def test_no_key_when_required_by_setting_is_400_and_the_view_does_not_run(
    client: Any, settings: Any
) -> None:
    settings.IDEMPOTENCY = {"REQUIRED": True}

    problem = assert_problem(send(client, key=None), 400, "key-missing")

    assert "Idempotency-Key" in problem["detail"]
    assert Charge.objects.count() == 0
    assert not IdempotencyRecord.objects.exists()


def test_safe_method_without_a_key_passes_through_when_keys_are_required(
    client: Any, settings: Any
) -> None:
    settings.IDEMPOTENCY = {"REQUIRED": True}

    assert client.get(PLAIN).status_code == 201
    assert client.get("/plain-required/").status_code == 201


def test_no_key_when_required_by_decorator_is_400_and_the_view_does_not_run(
    client: Any,
) -> None:
    assert_problem(send(client, "/plain-required/", key=None), 400, "key-missing")

    assert Charge.objects.count() == 0


def test_no_key_when_required_by_mixin_is_400_and_the_view_does_not_run(client: Any) -> None:
    response = send(client, "/configured-viewset/", key=None, headers={"X-Tenant": "t"})

    assert_problem(response, 400, "key-missing")
    assert Charge.objects.count() == 0


# A new key, then its replay


def test_new_key_runs_the_view_once_and_returns_its_response_unchanged(client: Any) -> None:
    response = send(client)

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert response["X-Not-Replayed"] == "yes"
    assert response.cookies["session-ish"].value == "secret"
    charge = Charge.objects.get()
    assert response.json() == {"id": charge.pk, "amount": 5}
    record = IdempotencyRecord.objects.get()
    assert record.status == Status.COMPLETED
    assert (record.scope, record.key, record.method, record.path) == (
        "anonymous",
        digest("key-1"),
        "POST",
        PLAIN,
    )
    assert record.response_status == 201
    assert bytes(record.response_body) == response.content
    assert record.locked_until is None


def test_the_record_keeps_the_path_without_its_query_string(client):
    # A query string may carry a secret (a signed link, an API token): the
    # record, which the admin and a database dump show, keeps the path alone.
    response = client.post(
        f"{PLAIN}?signature=s3cr3t-signature", {"amount": 5}, HTTP_IDEMPOTENCY_KEY="key-q"
    )

    assert response.status_code == 201
    record = IdempotencyRecord.objects.get()
    assert record.path == PLAIN
    assert "s3cr3t" not in repr(IdempotencyRecord.objects.values().get())


def test_completed_key_replays_the_stored_response_without_running_the_view(
    client: Any,
) -> None:
    first = send(client)

    second = send(client)

    assert second.status_code == first.status_code == 201
    assert second.content == first.content
    assert second["Content-Type"] == first["Content-Type"]
    assert second["Location"] == first["Location"]
    assert second["Idempotent-Replayed"] == "true"
    assert Charge.objects.count() == 1


def test_replay_is_repeatable(client: Any) -> None:
    first = send(client)

    replays = [send(client) for _ in range(3)]

    assert {replay.content for replay in replays} == {first.content}
    assert Charge.objects.count() == 1


# Same key, different request: 422


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(("post", PLAIN, {"amount": 5}), ("post", PLAIN, {"amount": 6}), id="body"),
        pytest.param(("post", PLAIN, {"amount": 5}), ("put", PLAIN, {"amount": 5}), id="method"),
        pytest.param(
            ("put", "/viewset/1/", {"amount": 5}),
            ("patch", "/viewset/1/", {"amount": 5}),
            id="viewset-method",
        ),
        pytest.param(
            ("post", PLAIN, {"amount": 5}), ("post", "/class-view/", {"amount": 5}), id="path"
        ),
        pytest.param(
            ("put", "/viewset/1/", {"amount": 5}),
            ("put", "/viewset/2/", {"amount": 5}),
            id="viewset-path",
        ),
        pytest.param(
            ("post", PLAIN + "?a=1", {"amount": 5}),
            ("post", PLAIN + "?a=2", {"amount": 5}),
            id="query-string",
        ),
        pytest.param(
            ("post", PLAIN, {"amount": 5}),
            ("post", PLAIN + "?a=1", {"amount": 5}),
            id="query-added",
        ),
    ],
)
def test_same_key_with_another_request_is_422_and_the_view_does_not_run(
    client: Any, first: tuple[str, str, dict[str, Any]], second: tuple[str, str, dict[str, Any]]
) -> None:
    method, path, body = first
    assert send(client, path, body, method=method).status_code == 201

    method, path, body = second
    assert_problem(send(client, path, body, method=method), 422, "key-reused")

    assert Charge.objects.count() == 1
    assert IdempotencyRecord.objects.get().status == Status.COMPLETED


def test_same_key_with_another_request_while_the_first_runs_is_422(client: Any) -> None:
    claim_in_progress(body={"amount": 5})

    assert_problem(send(client, body={"amount": 6}), 422, "key-reused")

    assert Charge.objects.count() == 0
    record = IdempotencyRecord.objects.get()
    assert (record.status, record.version) == (Status.IN_PROGRESS, 1)  # untouched


# Same request while the first runs: 409


def test_same_request_while_the_first_runs_is_409_with_retry_after(client: Any) -> None:
    claim_in_progress()

    response = send(client)

    assert_problem(response, 409, "request-in-progress")
    assert response["Retry-After"] == "1"
    assert Charge.objects.count() == 0
    record = IdempotencyRecord.objects.get()
    assert (record.status, record.version) == (Status.IN_PROGRESS, 1)


def test_request_after_the_lock_timeout_takes_the_record_over_and_runs_the_view(
    client: Any,
) -> None:
    claim = claim_in_progress()
    assert send(client).status_code == 409  # the lock still holds

    set_time(claim.record_id, "locked_until", -1)  # the database clock moved past the lock
    response = send(client)

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert Charge.objects.count() == 1
    record = IdempotencyRecord.objects.get()
    assert record.status == Status.COMPLETED
    assert record.version == 3  # claimed, taken over, completed
    assert send(client)["Idempotent-Replayed"] == "true"


# Releasing: the view raised, or answered 5xx or a RELEASE_STATUSES status


def test_view_that_raises_propagates_and_releases_the_key(client: Any) -> None:
    with pytest.raises(ViewFailed):
        send(client, body={"amount": 5, "fail": True})

    assert not IdempotencyRecord.objects.exists()
    assert Charge.objects.count() == 0  # the view's write was rolled back
    with pytest.raises(ViewFailed):  # the retry runs the view again
        send(client, body={"amount": 5, "fail": True})
    response = send(client, body={"amount": 5})  # not 422: nothing was kept
    assert response.status_code == 201
    assert Charge.objects.count() == 1


@pytest.mark.parametrize("status", [500, 502, 503, 401, 403, 408, 409, 425, 429])
def test_view_answering_a_released_status_is_returned_but_not_stored(
    client: Any, status: int
) -> None:
    body = {"amount": 5, "status": status}

    first = send(client, body=body)

    assert first.status_code == status
    assert "Idempotent-Replayed" not in first
    assert first.json()["amount"] == 5
    assert not IdempotencyRecord.objects.exists()
    assert Charge.objects.count() == 0  # rolled back with the release
    retry = send(client, body=body)
    assert retry.status_code == status
    assert "Idempotent-Replayed" not in retry
    assert send(client, body={"amount": 5}).status_code == 201


@pytest.mark.parametrize("path", ["/api-function/", "/viewset/", "/action/refund/"])
def test_drf_view_answering_a_released_status_is_not_stored(client: Any, path: str) -> None:
    body = {"amount": 5, "status": 503}

    assert send(client, path, body).status_code == 503

    assert not IdempotencyRecord.objects.exists()
    assert Charge.objects.count() == 0
    assert send(client, path, {"amount": 5}).status_code == 201


def test_custom_release_statuses_replace_the_default_list(client: Any, settings: Any) -> None:
    settings.IDEMPOTENCY = {"RELEASE_STATUSES": [402]}

    assert send(client, body={"status": 402}, key="a").status_code == 402
    assert send(client, body={"status": 429}, key="b").status_code == 429

    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == [digest("b")]
    assert send(client, body={"status": 429}, key="b")["Idempotent-Replayed"] == "true"


def test_5xx_is_released_even_when_release_statuses_is_empty(client: Any, settings: Any) -> None:
    settings.IDEMPOTENCY = {"RELEASE_STATUSES": ()}

    assert send(client, body={"status": 500}).status_code == 500

    assert not IdempotencyRecord.objects.exists()


@pytest.mark.parametrize("status", [200, 202, 204, 400, 404, 410, 422])
def test_view_answering_another_status_is_stored_and_replayed(client: Any, status: int) -> None:
    body = {"amount": 5, "status": status}
    first = send(client, body=body)

    second = send(client, body=body)

    assert first.status_code == second.status_code == status
    assert second.content == first.content
    assert second["Idempotent-Replayed"] == "true"
    assert Charge.objects.count() == 1


# Expiry


def test_record_past_its_expiry_is_as_if_absent(client: Any) -> None:
    assert send(client).status_code == 201
    old_fingerprint = IdempotencyRecord.objects.get().fingerprint
    # Time as data, on the database's clock: expired as of its creation.
    IdempotencyRecord.objects.update(expires_at=F("created_at"))

    response = send(client, body={"amount": 7})  # another body: no 422 either

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert Charge.objects.count() == 2
    record = IdempotencyRecord.objects.get()
    assert record.fingerprint != old_fingerprint  # the record is the new request's
    assert record.status == Status.COMPLETED
    assert record.expires_at > record.created_at
    assert send(client, body={"amount": 7})["Idempotent-Replayed"] == "true"


def test_expired_record_still_running_under_its_lock_is_not_taken_over(client: Any) -> None:
    # A view slower than its TTL must not run twice: the live lock wins.
    claim_in_progress()
    IdempotencyRecord.objects.update(expires_at=F("created_at"))

    assert_problem(send(client), 409, "request-in-progress")
    assert_problem(send(client, body={"amount": 7}), 422, "key-reused")
    assert Charge.objects.count() == 0


def test_expired_record_whose_lock_expired_is_taken_over(client: Any) -> None:
    claim_in_progress()
    IdempotencyRecord.objects.update(expires_at=F("created_at"), locked_until=F("created_at"))

    assert send(client, body={"amount": 7}).status_code == 201

    assert Charge.objects.count() == 1
    assert IdempotencyRecord.objects.get().status == Status.COMPLETED


def test_ttl_setting_expires_records(client: Any, settings: Any) -> None:
    settings.IDEMPOTENCY = {"TTL": 90}
    assert send(client).status_code == 201
    assert send(client)["Idempotent-Replayed"] == "true"
    record = IdempotencyRecord.objects.get()
    assert (record.expires_at - record.created_at).total_seconds() == 90

    set_time(record.pk, "expires_at", -1)  # the database clock moved past the TTL

    assert "Idempotent-Replayed" not in send(client)
    assert Charge.objects.count() == 2


# Responses that cannot be stored


@pytest.mark.parametrize(
    ("kind", "content"),
    [
        ("stream", b"chunk0\nchunk1\nchunk2\n"),
        ("file", b"file-bytes"),
    ],
)
def test_streamed_response_passes_through_and_a_retry_gets_410(
    client: Any, caplog: Any, kind: str, content: bytes
) -> None:
    body = {"amount": 5, "kind": kind}
    with caplog.at_level(logging.WARNING, logger="idempotency"):
        first = send(client, body=body)

    assert first.status_code in (200, 201)
    assert b"".join(first.streaming_content) == content
    assert any(
        r.name == "idempotency"
        and r.levelno == logging.WARNING
        and shown(digest("key-1")) in r.getMessage()
        for r in caplog.records
    )
    record = IdempotencyRecord.objects.get()
    assert record.status == Status.COMPLETED
    assert record.response_body is None
    retry = send(client, body=body)
    assert_problem(retry, 410, "response-not-replayable")
    assert Charge.objects.count() == 1


def test_response_larger_than_the_limit_passes_through_and_a_retry_gets_410(
    client: Any, caplog: Any
) -> None:
    body = {"amount": 5, "kind": "big"}  # 2 MiB, over the 1 MiB default
    with caplog.at_level(logging.WARNING, logger="idempotency"):
        first = send(client, body=body)

    assert first.status_code == 201
    assert first.content == b"x" * (2 * 1024 * 1024)
    assert "MAX_STORED_RESPONSE_BYTES" in caplog.text
    assert IdempotencyRecord.objects.get().response_body is None
    assert_problem(send(client, body=body), 410, "response-not-replayable")
    assert Charge.objects.count() == 1


def test_max_stored_response_bytes_is_the_largest_stored_body(client: Any, settings: Any) -> None:
    settings.IDEMPOTENCY = {"MAX_STORED_RESPONSE_BYTES": 100}

    at_limit = {"kind": "big", "size": 100}
    over_limit = {"kind": "big", "size": 101}
    assert send(client, body=at_limit, key="at").content == b"x" * 100
    assert send(client, body=over_limit, key="over").content == b"x" * 101

    assert send(client, body=at_limit, key="at").content == b"x" * 100
    assert_problem(send(client, body=over_limit, key="over"), 410, "response-not-replayable")
    assert Charge.objects.count() == 2


# The record store is down


@pytest.fixture
def unreachable_database(settings: Any) -> Iterator[str]:
    """A database alias nothing listens on, as a connection made at run time.

    Not in DATABASES: the test runner would try to create a test database on
    it, and Django's test case would refuse queries to it; connections made
    at run time are allowed. The store only needs ``connections[alias]``.
    """
    alias = "unreachable"
    default = connections.settings["default"]
    if default["ENGINE"].endswith("sqlite3"):
        unreachable = {"ENGINE": default["ENGINE"], "NAME": "/nonexistent-directory/db.sqlite3"}
    else:
        unreachable = {**default, "PORT": "1", "TEST": {}}
    configured = connections.configure_settings({"default": dict(default), alias: unreachable})
    backend = load_backend(unreachable["ENGINE"])
    connections[alias] = backend.DatabaseWrapper(configured[alias], alias)
    settings.IDEMPOTENCY = {"DATABASE": alias}
    yield alias
    connections[alias].close()
    del connections[alias]


def test_unreachable_store_is_503_with_retry_after_and_the_view_does_not_run(
    client: Any, unreachable_database: str
) -> None:
    response = send(client)

    assert_problem(response, 503, "store-unavailable")
    assert response["Retry-After"] == "5"
    assert Charge.objects.count() == 0


def test_unreachable_store_does_not_matter_without_a_key(
    client: Any, unreachable_database: str
) -> None:
    assert send(client, key=None).status_code == 201


# Bodies the fingerprint cannot read


def test_body_over_data_upload_max_memory_size_is_413(client: Any, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100

    response = send(client, body={"amount": 5, "padding": "x" * 200})

    assert_problem(response, 413, "request-too-large")
    assert Charge.objects.count() == 0
    assert not IdempotencyRecord.objects.exists()


def test_malformed_multipart_body_is_400(client: Any) -> None:
    response = client.post(
        PLAIN,
        b"not multipart at all",
        content_type="multipart/form-data",  # no boundary
        headers={"Idempotency-Key": "key-1"},
    )

    assert_problem(response, 400, "body-malformed")
    assert Charge.objects.count() == 0


# Contract section 4 on the DRF entry points too


@pytest.mark.parametrize("path", ["/api-function/", "/api-view/", "/viewset/", "/action/refund/"])
def test_drf_views_answer_problems_as_problem_json(client: Any, path: str) -> None:
    assert send(client, path).status_code == 201

    assert_problem(send(client, path, {"amount": 6}), 422, "key-reused")
    assert_problem(send(client, path, key=" "), 400, "key-invalid")


def test_drf_view_answers_409_as_problem_json(client: Any) -> None:
    claim_in_progress("/viewset/")

    response = send(client, "/viewset/")

    assert_problem(response, 409, "request-in-progress")
    assert response["Retry-After"] == "1"
