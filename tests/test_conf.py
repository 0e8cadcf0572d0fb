"""Contract section 5: the settings, read at call time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings

from idempotency.conf import DEFAULTS
from idempotency.keys import digest
from idempotency.models import IdempotencyRecord
from tests.test_http import assert_problem, send
from tests.testapp.models import Charge

pytestmark = pytest.mark.django_db


def record_lifetime() -> timedelta:
    record = IdempotencyRecord.objects.get()
    return record.expires_at - record.created_at


def test_defaults_are_the_documented_ones() -> None:
    assert dict(DEFAULTS) == {
        "HEADER": "Idempotency-Key",
        "REQUIRED": False,
        "TTL": timedelta(hours=24),
        "LOCK_TIMEOUT": timedelta(seconds=60),
        "KEY_MAX_LENGTH": 255,
        "SCOPE": "idempotency.scope.default_scope",
        "REPLAY_HEADERS": (),
        "RELEASE_STATUSES": (401, 403, 408, 409, 425, 429),
        "FINGERPRINT": "idempotency.fingerprint.request_fingerprint",
        "MAX_STORED_RESPONSE_BYTES": 1024 * 1024,
        "DATABASE": "default",
        "ANONYMOUS": "share",
        "IN_PROGRESS_WAIT": 0,
        "STORE": "database",
        "REDIS_URL": None,
        "REDIS_CLUSTER": False,
        "REDIS_PREFIX": "idempotency:",
    }


def test_settings_are_read_at_call_time(client: Any) -> None:
    assert send(client, key=None).status_code == 201

    with override_settings(IDEMPOTENCY={"REQUIRED": True}):
        assert_problem(send(client, key=None), 400, "key-missing")

    assert send(client, key=None).status_code == 201


def test_settings_fixture_changes_behaviour_between_requests(client: Any, settings: Any) -> None:
    settings.IDEMPOTENCY = {"KEY_MAX_LENGTH": 3}
    assert_problem(send(client, key="abcd"), 400, "key-invalid")

    settings.IDEMPOTENCY = {}

    assert send(client, key="abcd").status_code == 201


def test_missing_idempotency_setting_means_every_default(client: Any, settings: Any) -> None:
    del settings.IDEMPOTENCY

    assert send(client).status_code == 201
    assert record_lifetime() == timedelta(hours=24)


@pytest.mark.parametrize(
    ("ttl", "lifetime"),
    [
        (3600, timedelta(hours=1)),
        (90.5, timedelta(seconds=90.5)),
        (timedelta(days=2), timedelta(days=2)),
    ],
)
def test_ttl_is_seconds_or_a_timedelta(
    client: Any, settings: Any, ttl: Any, lifetime: timedelta
) -> None:
    settings.IDEMPOTENCY = {"TTL": ttl}

    send(client)

    assert record_lifetime() == lifetime


def test_decorator_ttl_option_overrides_the_setting(client: Any, settings: Any) -> None:
    settings.IDEMPOTENCY = {"TTL": 3600}

    send(client, "/ttl/")

    assert record_lifetime() == timedelta(seconds=120)


@pytest.mark.parametrize(
    ("lock_timeout", "seconds"),
    [(None, 60.0), (5, 5.0), (timedelta(minutes=3), 180.0)],
)
def test_lock_timeout_is_seconds_or_a_timedelta(
    client: Any, settings: Any, lock_timeout: Any, seconds: float
) -> None:
    settings.IDEMPOTENCY = {} if lock_timeout is None else {"LOCK_TIMEOUT": lock_timeout}

    response = send(client, "/record/")

    assert response.json() == {"status": "in_progress", "lock_seconds": seconds}
    assert IdempotencyRecord.objects.get().locked_until is None  # completed


def test_header_setting_names_the_request_header(client: Any, settings: Any) -> None:
    settings.IDEMPOTENCY = {"HEADER": "X-Request-Key"}

    first = send(client, key=None, headers={"X-Request-Key": "k"})
    replay = send(client, key=None, headers={"X-Request-Key": "k"})

    assert first.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert IdempotencyRecord.objects.get().key == digest("k")


def test_default_header_is_ignored_when_another_is_configured(client: Any, settings: Any) -> None:
    settings.IDEMPOTENCY = {"HEADER": "X-Request-Key"}

    send(client, key="k")
    send(client, key="k")

    assert Charge.objects.count() == 2
    assert not IdempotencyRecord.objects.exists()


def test_missing_key_problem_names_the_configured_header(client: Any, settings: Any) -> None:
    settings.IDEMPOTENCY = {"HEADER": "X-Request-Key", "REQUIRED": True}

    problem = assert_problem(send(client, key=None), 400, "key-missing")

    assert "X-Request-Key" in problem["detail"]
