"""idempotency.client without a network: the retry policy, with time as data,
and the misuse the clients refuse before anything is sent.

What the clients do against a real server is in tests/test_client_example.py.
"""

from __future__ import annotations

import ast
import io
import itertools
import logging
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest

from idempotency.client import (
    DEFAULT_HEADER,
    REPLAYED_HEADER,
    RETRY_STATUSES,
    AsyncIdempotentClient,
    IdempotentClient,
    IdempotentResponse,
    RetryPolicy,
    new_key,
    retry_after,
)

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def policy(**options: object) -> RetryPolicy:
    """A policy whose jitter draws the top of its range unless told otherwise."""
    return RetryPolicy(**{"random": lambda: 1.0, "now": lambda: NOW, **options})  # type: ignore[arg-type]


def answer(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers={k.replace("_", "-"): v for k, v in headers.items()})


# Backoff -------------------------------------------------------------------


def test_backoff_doubles_from_backoff_up_to_max_delay():
    rules = policy(backoff=0.5, max_delay=5)

    assert [rules.delay(retry) for retry in range(1, 7)] == [0.5, 1, 2, 4, 5, 5]


def test_backoff_is_full_jitter_a_random_fraction_of_the_ceiling():
    draws = iter([0.0, 0.25, 0.5, 0.999])
    rules = policy(backoff=1, max_delay=100, random=lambda: next(draws))

    assert [rules.delay(retry) for retry in range(1, 5)] == [0.0, 0.5, 2.0, 7.992]


def test_backoff_of_a_very_late_retry_is_max_delay_not_an_overflow():
    assert policy(max_delay=30).delay(10_000) == 30


# Retry-After -------------------------------------------------------------------


def test_retry_after_in_seconds():
    assert retry_after(answer(409, retry_after="7"), NOW) == 7
    assert retry_after(answer(503, retry_after=" 0 "), NOW) == 0


def test_retry_after_as_an_http_date_counts_from_the_responses_own_date():
    # The server's clock says 12:00:00 and asks for 12:00:30; this client's
    # clock is an hour behind. The wait is the 30 seconds the server meant.
    response = answer(
        503,
        retry_after="Sun, 01 Mar 2026 12:00:30 GMT",
        date="Sun, 01 Mar 2026 12:00:00 GMT",
    )

    assert retry_after(response, NOW - timedelta(hours=1)) == 30


def test_retry_after_as_an_http_date_without_a_date_header_counts_from_now():
    response = answer(429, retry_after=format_datetime(NOW + timedelta(seconds=12), usegmt=True))

    assert retry_after(response, NOW) == 12


def test_retry_after_in_the_past_is_no_wait():
    response = answer(429, retry_after=format_datetime(NOW - timedelta(minutes=5), usegmt=True))

    assert retry_after(response, NOW) == 0


@pytest.mark.parametrize("value", ["", "soon", "-1", "1.5", "1e3", "Sun, 99 Foo 2026"])
def test_retry_after_that_is_neither_seconds_nor_a_date_is_ignored(value):
    assert retry_after(answer(503, retry_after=value), NOW) is None
    # ...and the wait is the backoff.
    assert policy(backoff=0.5).delay(1, answer(503, retry_after=value)) == 0.5


def test_retry_after_is_waited_at_least_even_when_the_backoff_is_shorter():
    rules = policy(backoff=0.5, random=lambda: 0.0)

    assert rules.delay(1, answer(409, retry_after="1")) == 1


def test_backoff_longer_than_retry_after_is_kept():
    rules = policy(backoff=0.5)

    assert rules.delay(4, answer(409, retry_after="1")) == 4


def test_retry_after_is_capped_at_max_delay():
    rules = policy(max_delay=30)

    assert rules.delay(1, answer(429, retry_after="3600")) == 30


# What is retried ------------------------------------------------------------


def test_exactly_409_429_502_503_and_504_are_retried():
    rules = policy()
    retried = {status for status in range(100, 600) if rules.retries_on(answer(status))}

    assert retried == {409, 429, 502, 503, 504} == RETRY_STATUSES


@pytest.mark.parametrize("status", [200, 201, 400, 401, 403, 404, 410, 422, 500])
def test_other_statuses_are_final(status):
    assert policy().next_delay(1, answer(status), started=0) is None


REQUEST = httpx.Request("POST", "http://127.0.0.1/")


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused", request=REQUEST),
        httpx.ConnectTimeout("connect timed out", request=REQUEST),
        httpx.ReadTimeout("read timed out", request=REQUEST),
        httpx.WriteTimeout("write timed out", request=REQUEST),
        httpx.PoolTimeout("no connection free", request=REQUEST),
        httpx.ReadError("reset by peer", request=REQUEST),
        httpx.WriteError("broken pipe", request=REQUEST),
        httpx.RemoteProtocolError("server disconnected", request=REQUEST),
    ],
    ids=lambda error: type(error).__name__,
)
def test_connection_errors_and_timeouts_are_retried(error):
    assert policy().retries_on(error)


@pytest.mark.parametrize(
    "error",
    [
        httpx.UnsupportedProtocol("ftp://", request=REQUEST),
        httpx.LocalProtocolError("bad header", request=REQUEST),
        httpx.ProxyError("proxy refused", request=REQUEST),
        httpx.TooManyRedirects("loop", request=REQUEST),
        httpx.DecodingError("bad gzip", request=REQUEST),
        ValueError("not from httpx"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_other_errors_are_not_retried(error):
    assert not policy().retries_on(error)


# How many times, and until when -------------------------------------------


def test_retries_stop_after_retries():
    rules = policy(retries=3)
    waits = [rules.next_delay(retry, answer(503), started=0) for retry in range(1, 6)]

    assert waits == [0.5, 1, 2, None, None]


def test_no_retries_at_all_with_retries_0():
    assert policy(retries=0).next_delay(1, answer(503), started=0) is None


def test_no_retry_starts_if_its_wait_would_end_after_the_deadline():
    clock = iter([108.0, 109.5])
    rules = policy(deadline=10, backoff=2, clock=lambda: next(clock))

    # Started at 100: at 108 a 2 s wait ends at 110, the deadline itself.
    assert rules.next_delay(1, answer(503), started=100) == 2
    # At 109.5 the first retry's 2 s would end at 111.5.
    assert rules.next_delay(1, answer(503), started=100) is None


def test_a_wait_that_ends_on_the_deadline_itself_still_retries():
    rules = policy(deadline=10, random=lambda: 0.0, clock=lambda: 109.0)

    assert rules.next_delay(1, answer(409, retry_after="1"), started=100) == 1


def test_deadline_cuts_a_long_retry_after_rather_than_waiting_past_it():
    rules = policy(deadline=5, clock=lambda: 0.0)

    assert rules.next_delay(1, answer(429, retry_after="6"), started=0) is None


@pytest.mark.parametrize(
    "options",
    [
        {"retries": -1},
        {"retries": 1.5},
        {"retries": True},
        {"backoff": -0.1},
        {"max_delay": float("inf")},
        {"deadline": float("nan")},
        {"deadline": "60"},
    ],
    ids=str,
)
def test_a_policy_refuses_values_it_cannot_use(options):
    with pytest.raises(ValueError, match=f"RetryPolicy\\({next(iter(options))}="):
        RetryPolicy(**options)


# The clients, before anything is sent -------------------------------------

# Port 9 (discard) has no listener on this host: if a test below sent a
# request, it would fail with ConnectError rather than the error it expects.
NOWHERE = "http://127.0.0.1:9"


def test_a_key_is_a_fresh_uuid4():
    keys = {new_key() for _ in range(100)}

    assert len(keys) == 100
    assert {uuid.UUID(key).version for key in keys} == {4}


def test_retries_defaults_to_3():
    with IdempotentClient() as client:
        assert client.policy.retries == 3
    with IdempotentClient(retries=5) as client:
        assert client.policy.retries == 5


def test_retries_and_a_policy_together_are_refused():
    with pytest.raises(TypeError, match=r"RetryPolicy\(retries=2"):
        IdempotentClient(retries=2, policy=RetryPolicy())


@pytest.mark.parametrize("cls", [IdempotentClient, AsyncIdempotentClient])
def test_a_key_in_the_clients_default_headers_is_refused(cls):
    with pytest.raises(TypeError, match="every call would send that one key"):
        cls(headers={"idempotency-key": "shared"})
    with pytest.raises(TypeError, match="every call would send that one key"):
        cls(header="X-Request-Key", headers={"X-Request-Key": "shared"})


def test_a_key_on_a_safe_method_is_refused():
    with (
        IdempotentClient(base_url=NOWHERE) as client,
        pytest.raises(TypeError, match="GET is safe"),
    ):
        client.request("GET", "/", idempotency_key="k")


def test_a_streamed_body_is_refused_at_the_call():
    def chunks():
        yield b"amount=5"

    with IdempotentClient(base_url=NOWHERE) as client:
        with pytest.raises(TypeError, match="streamed body, which cannot be sent again"):
            client.post("/", content=chunks())
        with pytest.raises(TypeError, match="streamed body"):
            client.put("/", content=io.BytesIO(b"an open file"))
        request = client.build_request("POST", "/", content=chunks())
        with pytest.raises(TypeError, match="call request.read"):
            client.send(request)


def test_a_streamed_body_is_sent_by_a_client_that_does_not_retry():
    with IdempotentClient(base_url=NOWHERE, retries=0) as client, pytest.raises(httpx.ConnectError):
        client.post("/", content=iter([b"amount=5"]))


def test_an_async_streamed_body_is_refused_at_the_call():
    import asyncio

    async def chunks():
        yield b"amount=5"

    async def call() -> None:
        async with AsyncIdempotentClient(base_url=NOWHERE) as client:
            await client.post("/", content=chunks())

    with pytest.raises(TypeError, match="streamed body"):
        asyncio.run(call())


def test_idempotent_replayed_reads_the_header():
    replayed = httpx.Response(201, headers={REPLAYED_HEADER: "true"})
    replayed.__class__ = IdempotentResponse
    fresh = httpx.Response(201)
    fresh.__class__ = IdempotentResponse

    assert replayed.idempotent_replayed is True
    assert fresh.idempotent_replayed is False


def test_the_clients_header_names_are_the_servers():
    from idempotency.conf import DEFAULTS
    from idempotency.responses import REPLAYED_HEADER as SERVER_REPLAYED_HEADER

    assert (DEFAULTS["HEADER"], SERVER_REPLAYED_HEADER) == (DEFAULT_HEADER, REPLAYED_HEADER)


# httpx stays optional -------------------------------------------------------


def test_only_idempotency_client_imports_httpx():
    importers = []
    for path in sorted((ROOT / "idempotency").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(name == "httpx" or name.startswith("httpx.") for name in names):
                importers.append(path.relative_to(ROOT).as_posix())

    assert sorted(set(importers)) == ["idempotency/client.py"]


def test_the_package_and_the_app_load_without_importing_httpx():
    # A fresh interpreter: the app loads, the decorator is used, and httpx is
    # never imported, so projects without the client extra are unaffected.
    code = (
        "import sys, django\n"
        "django.setup()\n"
        "import idempotency, idempotency.decorators, idempotency.drf\n"
        "idempotency.idempotent(lambda request: None)\n"
        "assert 'httpx' not in sys.modules, 'httpx was imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"DJANGO_SETTINGS_MODULE": "tests.settings", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr


def test_the_client_needs_no_django_settings():
    code = (
        "from idempotency.client import IdempotentClient\n"
        "IdempotentClient().close()\n"
        "import django.conf\n"
        "assert not django.conf.settings.configured\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr


def test_every_retry_waits_what_the_policy_computed_and_no_more():
    # Time as data: the client's sleep is the policy's answer, passed on as is.
    # A refusing port fails every attempt at once, so nothing else waits.
    draws = itertools.cycle([0.5])
    slept: list[float] = []
    rules = RetryPolicy(retries=3, backoff=1, random=lambda: next(draws))
    with (
        IdempotentClient(base_url=NOWHERE, policy=rules, sleep=slept.append) as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.post("/", json={"amount": 5})

    assert slept == [0.5, 1.0, 2.0]


def test_a_short_key_is_logged_by_at_most_its_first_half(caplog):
    caplog.set_level(logging.INFO, logger="idempotency")
    with (
        IdempotentClient(base_url=NOWHERE, retries=1, sleep=lambda delay: None) as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.post("/pay", json={}, idempotency_key="order-1")

    assert "(key ord...)" in caplog.text
    assert "order-1" not in caplog.text
