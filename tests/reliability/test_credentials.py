"""Credentials are never stored nor replayed; bodies are never logged.

The stored headers are read back from the database (``response_headers``),
not from the package's own answer. The log tests capture every record of every
logger at DEBUG while requests whose bodies carry a unique marker go through
every path, error paths included, and look for the marker in each record's
message, arguments, extra attributes and formatted traceback.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from django.test import Client

from idempotency.models import IdempotencyRecord
from tests.test_http import (  # noqa: F401  (unreachable_database is a fixture)
    assert_problem,
    claim_in_progress,
    send,
    unreachable_database,
)
from tests.testapp.models import Charge

pytestmark = pytest.mark.django_db

CREDENTIAL_HEADERS = {
    "authorization",
    "proxy-authorization",
    "www-authenticate",
    "proxy-authenticate",
    "cookie",
    "set-cookie",
}
ECHO = "/secret-echo/"


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


# Logs


@pytest.fixture
def every_log_record(caplog: Any) -> Any:
    """Every record of every logger, at DEBUG; read ``.records`` after the
    requests (pytest replaces the list between test phases)."""
    for name in ("", "idempotency", "django"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def assert_marker_not_logged(records: list[logging.LogRecord], marker: str) -> None:
    formatter = logging.Formatter()
    assert records
    for record in records:
        text = [record.getMessage(), repr(record.msg), repr(record.args)]
        text += [repr(value) for name, value in vars(record).items() if name != "exc_info"]
        if record.exc_info:
            text.append(formatter.formatException(record.exc_info))
        assert not any(marker in part for part in text), (record.name, record.getMessage())


def idempotency_messages(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.name.startswith("idempotency")]


def assert_scope_and_key_in_every_message(messages: list[str], keys: set[str]) -> None:
    for message in messages:
        assert "scope=anonymous" in message, message
        assert any(f"key={key}" in message for key in keys), message


def test_bodies_never_appear_in_logs_on_any_path(client, settings, every_log_record):
    marker = f"MARKER-{uuid.uuid4().hex}"
    settings.IDEMPOTENCY = {"MAX_STORED_RESPONSE_BYTES": 200}
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    hostile = Client(raise_request_exception=False)
    body = {"secret": marker}

    assert send(client, ECHO, body, key="stored").status_code == 201  # stored
    assert send(client, ECHO, body, key="stored")["Idempotent-Replayed"] == "true"
    assert_problem(send(client, ECHO, {"secret": marker + "-2"}, key="stored"), 422, "key-reused")
    claim_in_progress(ECHO, body, key="running")
    assert_problem(send(client, ECHO, body, key="running"), 409, "request-in-progress")
    too_big = {"secret": marker, "size": 500}
    assert send(client, ECHO, too_big, key="not-stored").status_code == 201
    assert_problem(send(client, ECHO, too_big, key="not-stored"), 410, "response-not-replayable")
    assert send(client, ECHO, {**body, "status": 500}, key="released").status_code == 500
    assert send(hostile, ECHO, {**body, "fail": True}, key="raised").status_code == 500
    huge = {"secret": marker, "padding": "x" * 20_000}
    assert_problem(send(client, ECHO, huge, key="huge"), 413, "request-too-large")
    malformed = client.post(
        ECHO, f"--b\r\n{marker}", content_type="multipart/form-data",  # no boundary
        headers={"Idempotency-Key": "malformed"},
    )  # fmt: skip
    assert malformed.status_code == 400
    assert send(client, "/echo/", body, key="drf").status_code == 201  # DRF echoes it too
    assert marker.encode() in bytes(IdempotencyRecord.objects.get(key="stored").response_body)

    assert_marker_not_logged(every_log_record.records, marker)
    messages = idempotency_messages(every_log_record.records)
    assert_scope_and_key_in_every_message(
        messages, {"stored", "running", "not-stored", "released", "raised"}
    )
    for expected in (
        "replay scope=anonymous key=stored",
        "reused with another request scope=anonymous key=stored",
        "in progress scope=anonymous key=running",
        "retries will get 410 scope=anonymous key=not-stored",
        "released scope=anonymous key=released",
        "released scope=anonymous key=raised",
    ):
        assert any(expected in message for message in messages), (expected, messages)


def test_bodies_never_appear_in_logs_when_the_store_is_unavailable(
    client,
    unreachable_database,  # noqa: F811 (the fixture imported above)
    every_log_record,
):
    marker = f"MARKER-{uuid.uuid4().hex}"

    response = send(client, ECHO, {"secret": marker}, key="unavailable")

    assert_problem(response, 503, "store-unavailable")
    assert_marker_not_logged(every_log_record.records, marker)
    messages = idempotency_messages(every_log_record.records)
    assert any("unavailable" in m and "key=unavailable" in m for m in messages), messages
    assert_scope_and_key_in_every_message(messages, {"unavailable"})
