"""The retrying client of docs/clients.md, run as documented against a live server.

The code is taken from the page (the ```python block that starts with the
``# idempotent_client.py`` marker), so the page cannot drift from what is
tested.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from idempotency.models import IdempotencyRecord
from tests.testapp.models import Charge

CLIENTS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "clients.md"
MARKER = "# idempotent_client.py"
FAST = {"base_delay": 0.05, "max_delay": 0.2}


def documented_client_code() -> str:
    blocks = re.findall(r"^```python\n(.*?)^```", CLIENTS_PAGE.read_text(), re.M | re.S)
    marked = [block for block in blocks if block.startswith(MARKER)]
    assert len(marked) == 1, f"docs/clients.md needs one python block starting {MARKER!r}"
    return marked[0]


@pytest.fixture(scope="module")
def idempotent_client() -> Iterator[types.ModuleType]:
    """The documented code as the module ``idempotent_client``."""
    module = types.ModuleType("idempotent_client")
    sys.modules[module.__name__] = module
    try:
        exec(compile(documented_client_code(), str(CLIENTS_PAGE), "exec"), module.__dict__)
        yield module
    finally:
        del sys.modules[module.__name__]


class Retries:
    """The retries the client logged during the test."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog

    def records(self) -> list[logging.LogRecord]:
        return [r for r in self.caplog.records if r.name == "idempotent_client"]


@pytest.fixture
def retries(caplog: pytest.LogCaptureFixture) -> Retries:
    caplog.set_level(logging.INFO, logger="idempotent_client")
    return Retries(caplog)


def url(live_server: Any, path: str) -> str:
    return f"{live_server.url}{path}"


def test_the_page_has_the_marked_client():
    assert "def send(" in documented_client_code()


def test_first_attempt_response_is_returned(idempotent_client, live_server, retries):
    answer = idempotent_client.send("POST", url(live_server, "/plain/"), {"amount": 5}, **FAST)

    assert answer.status == 201
    assert not answer.replayed
    assert answer.json() == {"id": Charge.objects.get().pk, "amount": 5}
    assert answer.headers["content-type"] == "application/json"
    assert retries.records() == []
    assert IdempotencyRecord.objects.count() == 1


def test_generates_one_key_per_call(idempotent_client, live_server):
    idempotent_client.send("POST", url(live_server, "/plain/"), {"amount": 5}, **FAST)
    idempotent_client.send("POST", url(live_server, "/plain/"), {"amount": 5}, **FAST)

    assert Charge.objects.count() == 2
    assert IdempotencyRecord.objects.values("key").distinct().count() == 2


def test_retry_after_a_lost_response_gets_the_replay(idempotent_client, live_server):
    key = str(uuid.uuid4())
    first = idempotent_client.send(
        "POST", url(live_server, "/plain/"), {"amount": 7}, key=key, **FAST
    )
    # The response to the first call is lost on its way; the caller retries
    # the operation with the key it stored.
    again = idempotent_client.send(
        "POST", url(live_server, "/plain/"), {"amount": 7}, key=key, **FAST
    )

    assert (again.status, again.replayed, again.body) == (201, True, first.body)
    assert Charge.objects.count() == 1


def test_timed_out_attempt_is_retried_with_the_same_key(idempotent_client, live_server, retries):
    answer = idempotent_client.send(
        "POST", url(live_server, "/plain/"), {"amount": 9, "sleep": 1}, timeout=0.5, **FAST
    )

    assert "timed out" in retries.records()[0].getMessage()
    assert (answer.status, answer.replayed) == (201, True)
    assert answer.json() == {"id": Charge.objects.get().pk, "amount": 9}
    assert IdempotencyRecord.objects.count() == 1


def test_409_is_retried_after_its_retry_after(idempotent_client, live_server, retries):
    key = str(uuid.uuid4())
    body = {"amount": 3, "sleep": 1}
    first: dict[str, Any] = {}

    def slow_request() -> None:
        first["answer"] = idempotent_client.send(
            "POST", url(live_server, "/plain/"), body, key=key, **FAST
        )

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.3)  # the slow request holds the key now
    started = time.monotonic()
    answer = idempotent_client.send("POST", url(live_server, "/plain/"), body, key=key, **FAST)
    waited = time.monotonic() - started
    thread.join()

    assert "HTTP 409" in retries.records()[0].getMessage()
    assert retries.records()[0].args[-1] >= 1  # the delay: at least Retry-After: 1
    assert waited >= 1
    assert (answer.status, answer.replayed) == (201, True)
    assert not first["answer"].replayed
    assert answer.body == first["answer"].body
    assert Charge.objects.count() == 1


def test_422_is_returned_without_a_retry(idempotent_client, live_server, retries):
    key = str(uuid.uuid4())
    idempotent_client.send("POST", url(live_server, "/plain/"), {"amount": 1}, key=key, **FAST)

    answer = idempotent_client.send(
        "POST", url(live_server, "/plain/"), {"amount": 2}, key=key, **FAST
    )

    assert answer.status == 422
    assert answer.json()["type"] == "tag:django-idempotency,2026:key-reused"
    assert retries.records() == []
    assert Charge.objects.count() == 1


def test_5xx_is_retried_until_the_view_succeeds(
    idempotent_client, live_server, retries, tmp_path, monkeypatch
):
    monkeypatch.setenv("IDEMPOTENCY_TEST_MARKER_DIR", str(tmp_path))
    body = {"amount": 4, "fail_first": True}

    answer = idempotent_client.send("POST", url(live_server, "/fails-first/"), body, **FAST)

    assert [record.args[3] for record in retries.records()] == ["HTTP 500"]
    assert (answer.status, answer.replayed) == (201, False)
    assert Charge.objects.get().amount == 4  # the failed run's charge was rolled back


def test_410_stops_with_not_replayable(idempotent_client, live_server, retries):
    key = str(uuid.uuid4())
    streamed = {"kind": "stream"}
    idempotent_client.send("POST", url(live_server, "/plain/"), streamed, key=key, **FAST)

    with pytest.raises(idempotent_client.NotReplayable, match="response-not-replayable"):
        idempotent_client.send("POST", url(live_server, "/plain/"), streamed, key=key, **FAST)
    assert retries.records() == []
    assert Charge.objects.count() == 1


def test_gives_up_with_the_key_when_every_attempt_fails(idempotent_client, live_server, retries):
    # Port 9 (discard) on this host refuses connections: no server listens there.
    key = str(uuid.uuid4())
    with pytest.raises(idempotent_client.RetriesExhausted) as raised:
        idempotent_client.send("POST", "http://127.0.0.1:9/plain/", {}, key=key, attempts=3, **FAST)

    assert raised.value.key == key
    assert len(retries.records()) == 2
