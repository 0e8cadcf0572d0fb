"""Contract section 3, "Replayed headers", and byte-for-byte replay of bodies."""

from __future__ import annotations

from typing import Any

import pytest

from idempotency.models import IdempotencyRecord
from idempotency.responses import NEVER_STORED_HEADERS
from tests.test_http import send
from tests.testapp.models import Charge

pytestmark = pytest.mark.django_db

ALLOW_LISTED = [
    "Content-Type",
    "Location",
    "Content-Language",
    "Content-Disposition",
    "ETag",
    "Last-Modified",
    "Link",
]


def stored_header_names() -> set[str]:
    return {name.lower() for name in IdempotencyRecord.objects.get().response_headers}


def test_replay_carries_every_allow_listed_header(client: Any) -> None:
    first = send(client, "/headers/")

    replay = send(client, "/headers/")

    for name in ALLOW_LISTED:
        assert replay[name] == first[name], name
    assert replay["Idempotent-Replayed"] == "true"
    assert Charge.objects.count() == 1


def test_other_headers_are_neither_stored_nor_replayed(client: Any) -> None:
    first = send(client, "/headers/")

    replay = send(client, "/headers/")

    assert first["X-Not-Replayed"] == "yes" and first["Cache-Control"] == "no-store"
    for name in ("X-Not-Replayed", "Cache-Control", "WWW-Authenticate", "Set-Cookie"):
        assert name not in replay, name
    assert not replay.cookies
    assert stored_header_names() == {name.lower() for name in ALLOW_LISTED}


def test_first_response_keeps_its_cookie_and_every_header(client: Any) -> None:
    response = send(client, "/headers/")

    assert response.cookies["session-ish"].value == "secret"
    assert response["Set-Cookie"] == "raw-session=secret; Path=/"
    assert response["WWW-Authenticate"] == 'Bearer realm="charges"'
    assert response["X-Not-Replayed"] == "yes"
    assert "Idempotent-Replayed" not in response


def test_replay_headers_setting_adds_headers(client: Any, settings: Any) -> None:
    settings.IDEMPOTENCY = {"REPLAY_HEADERS": ["x-not-replayed", "Cache-Control"]}
    send(client, "/headers/")

    replay = send(client, "/headers/")

    assert replay["X-Not-Replayed"] == "yes"
    assert replay["Cache-Control"] == "no-store"


# Every header that carries a credential, as the package lists them.
CREDENTIAL_HEADERS = NEVER_STORED_HEADERS


@pytest.fixture
def replay_everything(settings: Any) -> None:
    """REPLAY_HEADERS asks for every credential header, and for one that is
    not a credential, which proves the setting is honoured."""
    settings.IDEMPOTENCY = {"REPLAY_HEADERS": [*sorted(CREDENTIAL_HEADERS), "X-Replayable"]}


def test_credential_headers_are_neither_stored_nor_replayed_even_if_listed(
    client, replay_everything
):
    first = send(client, "/credentials/", headers={"Authorization": "Bearer request-secret"})

    assert first.status_code == 201
    assert first["Authorization"] == "Bearer response-secret"  # the original passes whole
    assert first.cookies["auth-token"].value == "response-secret"
    record = IdempotencyRecord.objects.get()
    stored = {name.lower() for name in record.response_headers}
    assert stored == {"content-type", "x-replayable"}
    assert "secret" not in repr(record.response_headers)
    stored_text = repr([getattr(record, f.attname) for f in IdempotencyRecord._meta.fields])
    assert "request-secret" not in stored_text
    assert "response-secret" not in stored_text

    replay = send(client, "/credentials/", headers={"Authorization": "Bearer request-secret"})

    assert replay["Idempotent-Replayed"] == "true"
    assert replay["X-Replayable"] == "yes"
    assert not {name.lower() for name in replay.headers} & CREDENTIAL_HEADERS
    assert not replay.cookies
    assert Charge.objects.count() == 1


def test_default_replay_headers_store_no_credential_header(client):
    send(client, "/credentials/")

    stored = {name.lower() for name in IdempotencyRecord.objects.get().response_headers}
    assert stored == {"content-type"}


@pytest.mark.parametrize(
    ("kind", "content_type"),
    [("csv", "text/csv"), ("binary", "application/octet-stream")],
)
def test_non_json_responses_replay_byte_for_byte(client: Any, kind: str, content_type: str) -> None:
    body = {"amount": 5, "kind": kind}
    first = send(client, body=body)

    replay = send(client, body=body)

    assert first["Content-Type"] == content_type
    assert replay.content == first.content
    assert replay["Content-Type"] == first["Content-Type"]
    assert replay.status_code == 201
    assert bytes(IdempotencyRecord.objects.get().response_body) == first.content


def test_csv_replay_keeps_its_content_disposition(client: Any) -> None:
    body = {"kind": "csv"}
    send(client, body=body)

    replay = send(client, body=body)

    assert replay["Content-Disposition"] == 'attachment; filename="charge.csv"'


def test_binary_body_with_every_byte_value_survives_the_store(client: Any) -> None:
    body = {"kind": "binary"}
    send(client, body=body)

    assert send(client, body=body).content == bytes(range(256)) * 4


@pytest.mark.parametrize("path", ["/api-function/", "/viewset/"])
def test_drf_response_replays_rendered_json(client: Any, path: str) -> None:
    first = send(client, path)

    replay = send(client, path)

    assert first["Content-Type"] == "application/json"
    assert replay["Content-Type"] == "application/json"
    assert replay.json() == first.json()
    assert replay["Location"] == first["Location"]


def test_empty_response_replays_empty(client: Any) -> None:
    body = {"status": 204}
    first = send(client, body=body)

    replay = send(client, body=body)

    assert replay.status_code == 204
    assert replay.content == first.content


def test_template_response_is_rendered_stored_and_replayed(client: Any) -> None:
    first = send(client, "/template/")

    replay = send(client, "/template/")

    charge = Charge.objects.get()
    assert first.content == f"<p>charge {charge.pk}</p>".encode()
    assert replay.content == first.content
    assert replay["Idempotent-Replayed"] == "true"


def test_a_header_value_that_cannot_be_set_again_is_not_stored(client: Any, settings: Any) -> None:
    settings.IDEMPOTENCY = {"REPLAY_HEADERS": ["X-Odd", "Cache-Control"]}
    send(client, "/headers/")

    replay = send(client, "/headers/")  # a 500 on every replay, had it been stored

    assert replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert replay["Cache-Control"] == "no-store"
    assert "X-Odd" not in replay
    assert "x-odd" not in stored_header_names()
