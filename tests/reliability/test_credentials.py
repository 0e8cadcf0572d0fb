"""Bodies are never logged (credential headers: tests/test_responses.py).

The log tests capture every record of every
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

from idempotency.keys import digest, shown
from idempotency.models import IdempotencyRecord
from tests.test_http import (  # noqa: F401  (unreachable_database is a fixture)
    assert_problem,
    claim_in_progress,
    send,
    unreachable_database,
)

pytestmark = pytest.mark.django_db

ECHO = "/secret-echo/"


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


def logged(key: str) -> str:
    """How a log line shows a key: the start of its keyed digest, never the key."""
    return f"key={shown(digest(key))}"


def assert_scope_and_key_in_every_message(messages: list[str], keys: set[str]) -> None:
    for message in messages:
        assert "scope=anonymous" in message, message
        assert any(logged(key) in message for key in keys), message
        assert not any(f"key={key}" in message for key in keys), message


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
    assert marker.encode() in bytes(
        IdempotencyRecord.objects.get(key=digest("stored")).response_body
    )

    assert_marker_not_logged(every_log_record.records, marker)
    messages = idempotency_messages(every_log_record.records)
    assert_scope_and_key_in_every_message(
        messages, {"stored", "running", "not-stored", "released", "raised"}
    )
    for expected in (
        f"replay scope=anonymous {logged('stored')}",
        f"reused with another request scope=anonymous {logged('stored')}",
        f"in progress scope=anonymous {logged('running')}",
        f"retries will get 410 scope=anonymous {logged('not-stored')}",
        f"released scope=anonymous {logged('released')}",
        f"released scope=anonymous {logged('raised')}",
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
    assert any("unavailable" in m and logged("unavailable") in m for m in messages), messages
    assert_scope_and_key_in_every_message(messages, {"unavailable"})
