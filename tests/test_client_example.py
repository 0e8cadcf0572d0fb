"""idempotency.client against live servers: the test project on pytest-django's
live server (on the database IDEMPOTENCY_TEST_DB names), a real TCP proxy in
front of it that fails connections as told, and the example project's
``create_payment`` command against the example project under gunicorn.

Time is data: the clients get a ``sleep`` that records the delay the policy
computed and, where a test needs the server to move on first, waits for that
event (the first request finishing) instead of for a span of time.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

import tests.urls
from idempotency import idempotent
from idempotency.client import AsyncIdempotentClient, IdempotentClient, RetryPolicy
from idempotency.keys import digest
from idempotency.models import IdempotencyRecord
from tests.servers import NO_CONTROL_SOCKET, free_port, wait_until
from tests.testapp.models import Charge

ROOT = Path(__file__).resolve().parent.parent

# A view that holds its request until the test opens the gate its body names:
# "a slow first request still running" for as long as the test needs, with no
# sleep to outlast. The live server runs in this process, so an Event reaches it.
GATES: dict[str, threading.Event] = {}


@idempotent
def gated_view(request: HttpRequest) -> HttpResponse:
    body = json.loads(request.body)
    if not GATES[body["gate"]].wait(timeout=60):
        raise RuntimeError("the gate was never opened")
    charge = Charge.objects.create(amount=int(body["amount"]), label="gated")
    return JsonResponse({"id": charge.pk, "amount": charge.amount}, status=201)


urlpatterns = [path("gated/", gated_view), *tests.urls.urlpatterns]
pytestmark = pytest.mark.urls(__name__)


@pytest.fixture
def gate() -> Iterator[str]:
    name = str(uuid.uuid4())
    GATES[name] = threading.Event()
    yield name
    GATES.pop(name).set()  # never leave a server thread waiting


def charges() -> int:
    return Charge.objects.count()


def record(key: str) -> IdempotencyRecord:
    return IdempotencyRecord.objects.get(key=digest(key))


def in_progress(key: str) -> bool:
    return IdempotencyRecord.objects.filter(key=digest(key), status="in_progress").exists()


def completed(key: str) -> bool:
    return IdempotencyRecord.objects.filter(key=digest(key), status="completed").exists()


class FirstCall:
    """The first call with ``key``, held at the gate in a thread of its own
    until ``finish()``: the request a duplicate finds still running."""

    def __init__(self, url: str, gate: str, key: str, body: dict[str, Any]) -> None:
        self.gate = gate
        self.response: httpx.Response | None = None
        self.thread = threading.Thread(target=self._call, args=(url, key, body))
        self.thread.start()
        wait_until(lambda: in_progress(key), 30, "the first request holds the key")

    def _call(self, url: str, key: str, body: dict[str, Any]) -> None:
        with IdempotentClient(base_url=url) as api:
            self.response = api.post("/gated/", json=body, idempotency_key=key)

    def finish(self) -> None:
        GATES[self.gate].set()
        self.thread.join(timeout=60)


@dataclass
class Seen:
    """What a client sent and waited: every attempt's key, every response's
    status and Retry-After, every delay."""

    header: str = "Idempotency-Key"
    keys: list[str | None] = field(default_factory=list)
    statuses: list[tuple[int, str | None]] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    then: Callable[[], object] | None = None  # run after recording a delay

    def hooks(self) -> dict[str, list[Callable[..., Any]]]:
        def on_request(request: httpx.Request) -> None:
            self.keys.append(request.headers.get(self.header))

        def on_response(response: httpx.Response) -> None:
            self.statuses.append((response.status_code, response.headers.get("Retry-After")))

        return {"request": [on_request], "response": [on_response]}

    def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        if self.then is not None:
            self.then()

    async def async_sleep(self, delay: float) -> None:
        await asyncio.to_thread(self.sleep, delay)


# The jitter draws 0, so a delay is exactly the Retry-After the server sent
# (or 0 without one): the assertions below compare it with the response's.
NO_JITTER = RetryPolicy(random=lambda: 0.0)


def client(
    base: str, seen: Seen, policy: RetryPolicy = NO_JITTER, **options: Any
) -> IdempotentClient:
    return IdempotentClient(
        base_url=base, policy=policy, sleep=seen.sleep, event_hooks=seen.hooks(), **options
    )


# A real TCP proxy --------------------------------------------------------------


class FlakyProxy:
    """A TCP proxy to the live server. Connection n suffers ``faults[n]``, if
    any, and is forwarded as is after that:

    - ``"drop"``: read and closed, and nothing reaches the server;
    - ``"lose-response"``: forwarded, then closed when the server starts its
      answer, so the view has run and its response is stored, but the client
      never sees a byte of it;
    - ``"502"``, ``"503"``, ``"504"``: answered by the proxy itself, like a
      load balancer whose upstream is away, with ``Retry-After: 2``.
    """

    def __init__(self, upstream: tuple[str, int], faults: list[str]) -> None:
        self.upstream = upstream
        self.faults = faults
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed
                return
            fault = self.faults[self.connections] if self.connections < len(self.faults) else ""
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn, fault), daemon=True).start()

    def _handle(self, conn: socket.socket, fault: str) -> None:
        with conn:
            if fault == "drop":
                # Read first, so that the close is a clean end of stream
                # (RemoteProtocolError), not a reset that races the request.
                _read_request(conn)
                return
            if fault.isdigit():
                _read_request(conn)
                conn.sendall(
                    f"HTTP/1.1 {fault} Upstream away\r\nRetry-After: 2\r\n"
                    "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
                )
                return
            with socket.create_connection(self.upstream) as up:
                forward = threading.Thread(target=_pipe, args=(conn, up), daemon=True)
                forward.start()
                if fault == "lose-response":
                    up.recv(1)  # the server's first byte: the view has run
                    conn.shutdown(socket.SHUT_RDWR)
                    return
                _pipe(up, conn)
                forward.join(timeout=30)


def _pipe(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


def _read_request(conn: socket.socket) -> None:
    """Read one request, so that closing after the answer sends no reset."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    while length and len(body) < int(length.group(1)):
        body += conn.recv(65536)


@pytest.fixture
def proxy(live_server: Any) -> Iterator[Callable[..., FlakyProxy]]:
    started: list[FlakyProxy] = []
    address = httpx.URL(live_server.url)

    def start(*faults: str) -> FlakyProxy:
        started.append(FlakyProxy((address.host, address.port or 80), list(faults)))
        return started[-1]

    yield start
    for each in started:
        each.close()


# One key per call, reused on every attempt ---------------------------------


def test_a_call_sends_one_fresh_uuid4_key_once(live_server):
    seen = Seen()
    with client(live_server.url, seen) as api:
        response = api.post("/plain/", json={"amount": 5})

    assert response.status_code == 201
    assert response.idempotent_replayed is False
    assert len(seen.keys) == 1 and seen.delays == []
    assert uuid.UUID(seen.keys[0]).version == 4
    assert record(seen.keys[0]).response_status == 201
    assert charges() == 1


def test_each_call_gets_its_own_key(live_server):
    seen = Seen()
    with client(live_server.url, seen) as api:
        api.post("/plain/", json={"amount": 5})
        api.post("/plain/", json={"amount": 5})

    assert seen.keys[0] != seen.keys[1]
    assert charges() == 2


def test_a_409_is_retried_with_the_same_key_until_it_gets_the_replay(live_server, gate):
    key = str(uuid.uuid4())
    body = {"gate": gate, "amount": 3}
    first = FirstCall(live_server.url, gate, key, body)

    seen = Seen(then=first.finish)
    with client(live_server.url, seen) as api:
        response = api.post("/gated/", json=body, idempotency_key=key)

    assert seen.keys == [key, key]
    assert seen.statuses[0] == (409, "1")
    assert seen.delays == [1.0]  # the 409's Retry-After
    assert (response.status_code, response.idempotent_replayed) == (201, True)
    assert first.response is not None and first.response.idempotent_replayed is False
    assert response.content == first.response.content
    assert charges() == 1


def test_409s_until_retries_run_out_return_the_last_409(live_server, gate):
    key = str(uuid.uuid4())
    body = {"gate": gate, "amount": 3}
    first = FirstCall(live_server.url, gate, key, body)

    seen = Seen()
    policy = RetryPolicy(retries=2, random=lambda: 0.0)
    with client(live_server.url, seen, policy) as api:
        response = api.post("/gated/", json=body, idempotency_key=key)
    first.finish()

    assert response.status_code == 409
    assert response.headers["Content-Type"] == "application/problem+json"
    assert seen.keys == [key] * 3
    assert seen.delays == [1.0, 1.0]
    assert charges() == 1


def test_a_timed_out_attempt_is_retried_with_the_same_key_and_the_view_runs_once(live_server, gate):
    body = {"gate": gate, "amount": 9}
    seen = Seen()

    def first_request_finishes() -> None:
        GATES[gate].set()
        wait_until(lambda: completed(seen.keys[0]), 30, "the first request completes")

    seen.then = first_request_finishes
    # The gate is shut: the first attempt cannot answer within the timeout.
    with client(live_server.url, seen, timeout=0.5) as api:
        response = api.post("/gated/", json=body)

    assert seen.statuses == [(201, None)]  # one response: the first attempt timed out
    assert len(seen.keys) == 2 and seen.keys[0] == seen.keys[1]
    assert seen.delays == [0.0]
    assert (response.status_code, response.idempotent_replayed) == (201, True)
    assert charges() == 1


# Connection errors ----------------------------------------------------------


def test_a_dropped_connection_is_retried_with_the_same_key_and_the_view_runs_once(proxy):
    flaky = proxy("drop")
    seen = Seen()
    with client(flaky.url, seen) as api:
        response = api.post("/plain/", json={"amount": 4})

    assert flaky.connections == 2
    assert len(seen.keys) == 2 and seen.keys[0] == seen.keys[1]
    assert (response.status_code, response.idempotent_replayed) == (201, False)
    assert record(seen.keys[0]).response_status == 201
    assert charges() == 1


def test_a_lost_response_is_retried_with_the_same_key_and_gets_the_replay(proxy):
    flaky = proxy("lose-response")
    seen = Seen()
    with client(flaky.url, seen) as api:
        response = api.post("/plain/", json={"amount": 6})

    assert flaky.connections == 2
    assert len(seen.keys) == 2 and seen.keys[0] == seen.keys[1]
    assert seen.statuses == [(201, None)]  # the first answer never arrived
    assert (response.status_code, response.idempotent_replayed) == (201, True)
    assert response.json() == {"id": Charge.objects.get().pk, "amount": 6}
    assert charges() == 1


def test_a_port_that_refuses_every_time_raises_with_the_key_after_retries(db):
    seen = Seen()
    policy = RetryPolicy(retries=3, backoff=0.5, random=lambda: 1.0)
    refusing = f"http://127.0.0.1:{free_port()}"
    with client(refusing, seen, policy) as api, pytest.raises(httpx.ConnectError) as raised:
        api.post("/plain/", json={"amount": 1})

    assert len(seen.keys) == 4 and len(set(seen.keys)) == 1
    assert seen.delays == [0.5, 1.0, 2.0]
    assert raised.value.request.headers["Idempotency-Key"] == seen.keys[0]


@pytest.mark.parametrize("status", ["502", "503", "504"])
def test_gateway_errors_are_retried_after_their_retry_after(proxy, status):
    flaky = proxy(status, status)
    seen = Seen()
    with client(flaky.url, seen) as api:
        response = api.post("/plain/", json={"amount": 2})

    assert [code for code, _ in seen.statuses] == [int(status), int(status), 201]
    assert seen.delays == [2.0, 2.0]
    assert len(set(seen.keys)) == 1 and len(seen.keys) == 3
    assert (response.status_code, response.idempotent_replayed) == (201, False)
    assert charges() == 1


def test_429_is_retried_after_its_retry_after_up_to_retries(live_server):
    seen = Seen()
    with client(live_server.url, seen, RetryPolicy(retries=2, random=lambda: 0.0)) as api:
        response = api.post("/throttled/", json={"amount": 2})

    assert response.status_code == 429
    assert seen.statuses == [(429, "7")] * 3
    assert seen.delays == [7.0, 7.0]
    assert len(seen.keys) == 3 and len(set(seen.keys)) == 1


# Statuses that are the answer -----------------------------------------------


def test_422_is_returned_at_once(live_server):
    seen = Seen()
    key = str(uuid.uuid4())
    with client(live_server.url, seen) as api:
        api.post("/plain/", json={"amount": 1}, idempotency_key=key)
        response = api.post("/plain/", json={"amount": 2}, idempotency_key=key)

    assert response.status_code == 422
    assert response.json()["type"] == "tag:django-idempotency,2026:key-reused"
    assert seen.keys == [key, key]  # one attempt each
    assert seen.delays == []
    assert charges() == 1


def test_400_is_returned_at_once(live_server):
    seen = Seen()
    with client(live_server.url, seen) as api:
        response = api.post("/plain/", json={"amount": 1}, idempotency_key="k" * 256)

    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    assert len(seen.keys) == 1 and seen.delays == []
    assert charges() == 0


def test_500_is_returned_at_once_and_the_same_key_runs_the_view_again(
    live_server, tmp_path, monkeypatch
):
    monkeypatch.setenv("IDEMPOTENCY_TEST_MARKER_DIR", str(tmp_path))
    seen = Seen()
    key = str(uuid.uuid4())
    body = {"amount": 4, "fail_first": True}
    with client(live_server.url, seen) as api:
        failed = api.post("/fails-first/", json=body, idempotency_key=key)
        again = api.post("/fails-first/", json=body, idempotency_key=key)

    assert failed.status_code == 500
    assert seen.delays == []
    assert (again.status_code, again.idempotent_replayed) == (201, False)
    assert (tmp_path / f"{key}.runs").read_text().count("\n") == 2
    assert Charge.objects.get().amount == 4  # the failed run's charge was rolled back


# Safe methods, bodies, the header, the log ---------------------------------


def test_a_key_in_the_calls_headers_is_kept_on_every_attempt(proxy):
    flaky = proxy("drop")
    seen = Seen()
    key = str(uuid.uuid4())
    with client(flaky.url, seen) as api:
        response = api.post("/plain/", json={"amount": 1}, headers={"Idempotency-Key": key})

    assert seen.keys == [key, key]
    assert record(key).response_status == response.status_code == 201


def test_each_retry_is_logged_with_the_start_of_the_key_never_all_of_it(proxy, caplog):
    caplog.set_level(logging.INFO, logger="idempotency")
    flaky = proxy("drop")
    seen = Seen()
    with client(flaky.url, seen) as api:
        api.post("/plain/", json={"amount": 1})
    key = seen.keys[0]
    assert key is not None
    messages = [r.getMessage() for r in caplog.records if r.name == "idempotency"]

    assert messages == [
        f"Retry 1 of 3 of POST 127.0.0.1/plain/ (key {key[:8]}...) in 0.00 s after RemoteProtocolError"
    ]
    assert key not in caplog.text


def test_a_get_carries_no_key_and_is_retried_after_a_dropped_connection(proxy):
    flaky = proxy("drop")
    seen = Seen()
    with client(flaky.url, seen) as api:
        response = api.get("/api-function/")

    assert response.json() == {"charges": 0}
    assert seen.keys == [None, None]
    assert IdempotencyRecord.objects.count() == 0


def test_files_are_sent_whole_on_every_attempt_even_when_they_cannot_seek(proxy):
    class Unseekable(io.BytesIO):
        def seekable(self) -> bool:
            return False

        def seek(self, *args: Any) -> int:
            raise io.UnsupportedOperation("a pipe")

    flaky = proxy("drop")
    seen = Seen()
    with client(flaky.url, seen) as api:
        response = api.post(
            "/echo/",
            data={"note": "scan"},
            files={"receipt": ("receipt.txt", Unseekable(b"paid 19.99 EUR"), "text/plain")},
        )

    assert len(seen.keys) == 2
    assert (response.status_code, response.idempotent_replayed) == (201, False)
    assert response.json() == {"fields": {"note": "scan"}, "files": {"receipt": "paid 19.99 EUR"}}


def test_the_header_name_follows_the_servers_setting(live_server, settings):
    settings.IDEMPOTENCY = {"HEADER": "X-Request-Key"}
    seen = Seen(header="X-Request-Key")
    key = str(uuid.uuid4())
    with client(live_server.url, seen, header="X-Request-Key") as api:
        first = api.post("/plain/", json={"amount": 8}, idempotency_key=key)
        again = api.post("/plain/", json={"amount": 8}, idempotency_key=key)

    assert seen.keys == [key, key]
    assert (first.idempotent_replayed, again.idempotent_replayed) == (False, True)
    assert charges() == 1


# The async client -------------------------------------------------------------


def test_the_async_client_retries_a_409_with_the_same_key_until_the_replay(live_server, gate):
    key = str(uuid.uuid4())
    body = {"gate": gate, "amount": 3}
    first = FirstCall(live_server.url, gate, key, body)
    seen = Seen(then=first.finish)

    async def call() -> httpx.Response:
        async with AsyncIdempotentClient(
            base_url=live_server.url,
            policy=NO_JITTER,
            sleep=seen.async_sleep,
            event_hooks={
                name: [_awaitable(hook) for hook in hooks] for name, hooks in seen.hooks().items()
            },
        ) as api:
            return await api.post("/gated/", json=body, idempotency_key=key)

    response = asyncio.run(call())

    assert seen.keys == [key, key]
    assert seen.delays == [1.0]
    assert (response.status_code, response.idempotent_replayed) == (201, True)
    assert charges() == 1


def test_the_async_client_retries_a_lost_response_to_the_replay(proxy):
    flaky = proxy("lose-response")
    seen = Seen()

    async def call() -> httpx.Response:
        async with AsyncIdempotentClient(
            base_url=flaky.url,
            policy=NO_JITTER,
            sleep=seen.async_sleep,
            event_hooks={
                name: [_awaitable(hook) for hook in hooks] for name, hooks in seen.hooks().items()
            },
        ) as api:
            return await api.post("/plain/", json={"amount": 6})

    response = asyncio.run(call())

    assert len(seen.keys) == 2 and seen.keys[0] == seen.keys[1]
    assert (response.status_code, response.idempotent_replayed) == (201, True)
    assert charges() == 1


def _awaitable(hook: Callable[[Any], None]) -> Callable[[Any], Any]:
    async def call(value: Any) -> None:
        hook(value)

    return call


# The example project's create_payment command ---------------------------------


@pytest.fixture(scope="module")
def example_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The example project under gunicorn, on its own SQLite file."""
    tmp = tmp_path_factory.mktemp("example_server")
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
        "DJANGO_DEBUG": "1",
        "PAYMENTS_PROCESSOR_DELAY": "0",
    }
    for command in (["migrate", "--verbosity", "0"], ["demo_setup"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True,
                       capture_output=True, timeout=300)  # fmt: skip
    log = (tmp / "gunicorn.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "example_project.wsgi:application",
         "-w", "1", "-b", f"127.0.0.1:{port}", *NO_CONTROL_SOCKET],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert server.poll() is None, (tmp / "gunicorn.log").read_text()
        try:
            return httpx.get(f"{url}/api/").status_code in (200, 401, 403)
        except httpx.TransportError:
            return False

    try:
        wait_until(answers, 30, "the example project answers")
        yield {**env, "EXAMPLE_URL": url}
    finally:
        server.terminate()
        server.wait(timeout=15)
        log.close()


def create_payment(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "create_payment", "--url", env["EXAMPLE_URL"], *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_create_payment_creates_one_payment_and_a_rerun_with_its_key_replays(example_server):
    from example_project.payments.management.commands.demo_setup import DEMO_TOKEN

    first = create_payment(example_server, "--amount", "1999", "--description", "Blue mug")
    assert first.returncode == 0, first.stderr
    key = re.search(r"Idempotency-Key: (\S+)", first.stdout)
    assert key is not None, first.stdout
    assert "Created payment" in first.stdout and "19.99 EUR" in first.stdout

    again = create_payment(
        example_server, "--amount", "1999", "--description", "Blue mug", "--key", key.group(1)
    )
    assert again.returncode == 0, again.stderr
    assert "Replayed: the server had already created payment" in again.stdout

    mismatch = create_payment(example_server, "--amount", "2999", "--key", key.group(1))
    assert mismatch.returncode != 0
    assert "422" in mismatch.stderr

    listed = httpx.get(
        f"{example_server['EXAMPLE_URL']}/api/payments/",
        headers={"Authorization": f"Token {DEMO_TOKEN}"},
    ).json()
    payments = listed["results"] if isinstance(listed, dict) else listed
    assert [p["amount"] for p in payments if p["description"] == "Blue mug"] == [1999]


def documented_example(marker: str) -> str:
    page = (ROOT / "docs" / "clients.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", page, re.M | re.S)
    marked = [block for block in blocks if block.startswith(marker)]
    assert len(marked) == 1, f"docs/clients.md needs one python block starting {marker!r}"
    return marked[0]


@pytest.mark.parametrize(
    ("marker", "printed"),
    [("# example: sync client", r"^\d+ new$"), ("# example: async client", r"^201 False$")],
)
def test_the_documented_examples_run_as_written_against_the_example_project(
    example_server, capsys, marker, printed
):
    code = documented_example(marker).replace(
        "http://127.0.0.1:8000", example_server["EXAMPLE_URL"]
    )

    exec(compile(code, "docs/clients.md", "exec"), {"__name__": "docs_example"})

    assert re.match(printed, capsys.readouterr().out.strip())
