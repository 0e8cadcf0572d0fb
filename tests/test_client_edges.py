"""Client edges (review 14, issue 14): a key in the default headers, a
redirect to another origin, and stream()."""

from __future__ import annotations

import http.server
import io
import threading
from collections.abc import Iterator
from typing import Any

import pytest


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every POST 201 and records the key it carried."""

    keys: list[str | None]

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        type(self).keys.append(self.headers.get("Idempotency-Key"))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[str | None]]]:
    handler = type("Handler", (Recorder,), {"keys": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.keys
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_key_put_in_the_clients_default_headers_after_construction_is_not_shared_by_every_call(
    recorder,
):
    from idempotency.client import IdempotentClient

    url, keys = recorder
    with IdempotentClient(base_url=url, retries=0) as api:
        # httpx lets a client's default headers change at any time; the
        # constructor's TypeError ("every call would send that one key") is
        # then bypassed.
        api.headers["Idempotency-Key"] = "one-key-for-everything"
        refused = 0
        for amount in (1, 2):
            try:
                api.post("/pay/", json={"amount": amount})
            except TypeError:
                refused += 1

    # Two logical calls are two operations: two keys, or the call refused.
    assert refused == 2 or len(set(keys)) == len(keys) == 2, keys


class Redirector(http.server.BaseHTTPRequestHandler):
    """Answers every POST 307 to ``target`` (another origin)."""

    target: str

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(307)
        self.send_header("Location", f"{type(self).target}/elsewhere/")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def redirector(recorder) -> Iterator[tuple[str, list[str | None]]]:
    other_origin, keys = recorder  # 127.0.0.1:<port>
    handler = type(
        "Handler", (Redirector,), {"target": other_origin.replace("127.0.0.1", "localhost")}
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", keys
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_redirect_to_another_origin_does_not_carry_the_idempotency_key(redirector):
    """In the anonymous scope the key is the only secret (contract section 3,
    "Scope"); httpx drops Authorization on a redirect to another origin, and
    the key must not go where the credential may not."""
    from idempotency.client import IdempotentClient

    url, keys_elsewhere = redirector
    with IdempotentClient(base_url=url, follow_redirects=True, retries=0) as api:
        response = api.post("/pay/", json={"amount": 1}, idempotency_key="secret-key-1")

    assert response.status_code == 201  # the other origin answered
    assert keys_elsewhere == [None]


def test_files_sent_through_stream_are_read_once_as_for_post(recorder):
    """docs/clients.md: files in files= are read once and the same bytes go
    out on every attempt; httpx's stream() is part of the httpx.Client the
    client is, and builds its request without the client's _build."""
    from idempotency.client import IdempotentClient

    url, keys = recorder
    with (
        IdempotentClient(base_url=url) as api,
        api.stream("POST", "/upload/", files={"f": io.BytesIO(b"data")}) as response,
    ):
        assert response.status_code == 201
    assert len(keys) == 1 and keys[0]


def test_the_async_client_refuses_a_key_put_in_its_default_headers_after_construction(
    recorder,
):
    import asyncio

    from idempotency.client import AsyncIdempotentClient

    url, keys = recorder

    async def calls() -> None:
        async with AsyncIdempotentClient(base_url=url, retries=0) as api:
            api.headers["Idempotency-Key"] = "one-key-for-everything"
            with pytest.raises(TypeError, match="every call would send that one key"):
                await api.post("/pay/", json={"amount": 1})
            with pytest.raises(TypeError, match="every call would send that one key"):
                await api.post("/pay/", json={"amount": 2}, idempotency_key="its-own")

    asyncio.run(calls())
    assert keys == []


class SelfRedirector(Recorder):
    """307 from /pay/ to /elsewhere/ on the same origin, which records the key."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        if self.path != "/pay/":
            super().do_POST()
            return
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(307)
        self.send_header("Location", "/elsewhere/")
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_a_redirect_on_the_same_origin_keeps_the_idempotency_key():
    from idempotency.client import IdempotentClient

    handler = type("Handler", (SelfRedirector,), {"keys": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with IdempotentClient(base_url=url, follow_redirects=True, retries=0) as api:
            response = api.post("/pay/", json={"amount": 1}, idempotency_key="secret-key-1")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert response.status_code == 201
    assert handler.keys == ["secret-key-1"]


def test_the_async_client_drops_the_key_on_a_redirect_to_another_origin(redirector):
    import asyncio

    from idempotency.client import AsyncIdempotentClient

    url, keys_elsewhere = redirector

    async def call() -> int:
        async with AsyncIdempotentClient(base_url=url, follow_redirects=True, retries=0) as api:
            response = await api.post("/pay/", json={"amount": 1})
            return response.status_code

    assert asyncio.run(call()) == 201
    assert keys_elsewhere == [None]


def test_stream_takes_idempotency_key_as_request_does(recorder):
    from idempotency.client import IdempotentClient

    url, keys = recorder
    with (
        IdempotentClient(base_url=url) as api,
        api.stream("POST", "/pay/", json={"amount": 1}, idempotency_key="mine-1") as response,
    ):
        assert response.status_code == 201
        assert not response.idempotent_replayed
    assert keys == ["mine-1"]


def test_the_async_clients_stream_reads_files_once_and_takes_idempotency_key(recorder):
    import asyncio

    from idempotency.client import AsyncIdempotentClient

    url, keys = recorder

    async def call() -> int:
        async with (
            AsyncIdempotentClient(base_url=url) as api,
            api.stream(
                "POST", "/upload/", files={"f": io.BytesIO(b"data")}, idempotency_key="mine-2"
            ) as response,
        ):
            return response.status_code

    assert asyncio.run(call()) == 201
    assert keys == ["mine-2"]
