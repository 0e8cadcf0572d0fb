"""50 MB responses and request bodies: passed through, never stored, memory
bounded.

The memory tests run a real gunicorn server with one sync worker (so the
worker that served a request is known) and read that worker's peak resident
set size, ``VmHWM`` in /proc/<pid>/status, before and after the request: a
peak, not the current size, because CPython hands large buffers back to the
kernel as soon as they are freed. Those tests need a database that a second
process can reach (PostgreSQL, MariaDB); the in-process ones run everywhere.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from idempotency.keys import digest
from idempotency.models import IdempotencyRecord, Status
from tests.servers import Server, gunicorn_server
from tests.test_http import assert_problem, send
from tests.testapp.models import Charge

MB = 1024 * 1024
SIZE = 50 * MB
CHUNK = 64 * 1024
SERVER_DATABASES = ("postgresql", "mariadb")
needs_server_database = pytest.mark.skipif(
    os.environ.get("IDEMPOTENCY_TEST_DB", "sqlite") not in SERVER_DATABASES,
    reason="a gunicorn process cannot reach pytest-django's in-memory SQLite test database",
)
# Memory bounds, as increases of the worker's peak RSS over its warmed-up peak:
# - A 50 MB HttpResponse is built in memory by the view itself: one copy, the
#   app's own cost (measured: +50 MB). 1.5x allows that copy and allocator
#   slack but not a second full copy, which storing it (the driver's
#   parameter buffer), or joining or re-encoding it, would make.
# - A streamed response and a multipart upload are never whole in memory:
#   Django spools uploads over FILE_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) to a
#   temporary file, and the fingerprint hashes files chunk by chunk. 16 MB is
#   under a third of the body: reading it whole would fail the test.
IN_MEMORY_RESPONSE_BOUND = SIZE * 3 // 2
STREAMED_BOUND = 16 * MB


def peak_rss(pid: int) -> int:
    """The process's peak resident set size in bytes (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


@pytest.fixture(scope="module")
def one_worker(django_db_setup: None, tmp_path_factory: Any) -> Iterator[Server]:
    with gunicorn_server(tmp_path_factory.mktemp("large"), workers=1) as server:
        yield server


def worker_pid(server: Server) -> int:
    (pid,) = server.workers()
    return pid


def warm_up(server: Server) -> int:
    """Load every module and connection on the worker, reset its peak RSS to
    its current RSS (Linux: "5" > clear_refs), and return that baseline."""
    for _ in range(2):
        assert server.request("POST", "/plain/", {"amount": 1}, str(uuid.uuid4())).status == 201
    pid = worker_pid(server)
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return peak_rss(pid)


def post_streaming_answer(server: Server, path: str, body: dict[str, Any], key: str) -> Any:
    """POST, then read the answer in chunks: (status, headers, size, sha256)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    try:
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        conn.request("POST", path, json.dumps(body), headers)
        response = conn.getresponse()
        digest, size = hashlib.sha256(), 0
        while chunk := response.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
        return response.status, dict(response.getheaders()), size, digest.hexdigest()
    finally:
        conn.close()


@needs_server_database
@pytest.mark.parametrize(
    ("path", "body", "bound"),
    [
        ("/plain/", {"kind": "big", "size": SIZE}, IN_MEMORY_RESPONSE_BOUND),
        ("/big-stream/", {"size": SIZE}, STREAMED_BOUND),
    ],
    ids=["http-response", "streaming-response"],
)
def test_a_50mb_response_passes_through_whole_is_not_stored_and_memory_stays_bounded(
    transactional_db, one_worker, path, body, bound
):
    key = str(uuid.uuid4())
    before = warm_up(one_worker)
    charges = Charge.objects.count()

    status, headers, size, body_digest = post_streaming_answer(one_worker, path, body, key)
    increase = peak_rss(worker_pid(one_worker)) - before

    assert (status, size) == (201, SIZE)
    letter = b"x" if path == "/plain/" else b"s"
    assert body_digest == hashlib.sha256(letter * SIZE).hexdigest()
    assert "Idempotent-Replayed" not in headers
    record = IdempotencyRecord.objects.get(key=digest(key))
    assert (record.status, record.response_status, record.response_body) == (
        Status.COMPLETED, 201, None,
    )  # fmt: skip
    retry = one_worker.request("POST", path, body, key)
    assert (retry.status, retry.problem_slug) == (410, "response-not-replayable")
    assert Charge.objects.count() == charges + 1
    print(f"\n{path}: worker peak RSS +{increase / MB:.1f} MB for a {SIZE // MB} MB response")
    assert increase < bound, f"peak RSS grew by {increase / MB:.1f} MB"


def write_multipart(path: Path, boundary: str, size: int) -> int:
    """A multipart body with one field and one ``size``-byte file, on disk."""
    with path.open("wb") as out:
        out.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="amount"\r\n\r\n7\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="upload"; '
            f'filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
        )
        block = bytes(range(256)) * (CHUNK // 256)
        for start in range(0, size, len(block)):
            out.write(block[: size - start])
        out.write(f"\r\n--{boundary}--\r\n".encode())
    return path.stat().st_size


def post_file(server: Server, body: Path, boundary: str, key: str) -> Any:
    """POST a body from disk in chunks: the client never holds it whole."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    try:
        conn.putrequest("POST", "/plain/")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        conn.putheader("Content-Length", str(body.stat().st_size))
        conn.putheader("Idempotency-Key", key)
        conn.endheaders()
        with body.open("rb") as source:
            while chunk := source.read(CHUNK):
                conn.send(chunk)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@needs_server_database
def test_a_50mb_multipart_upload_is_fingerprinted_without_loading_it_and_replays(
    transactional_db, one_worker, tmp_path
):
    key = str(uuid.uuid4())
    first_body, retry_body = tmp_path / "first", tmp_path / "retry"
    write_multipart(first_body, "first-boundary", SIZE)
    write_multipart(retry_body, "another-boundary-on-retry", SIZE)
    before = warm_up(one_worker)
    charges = Charge.objects.count()

    status, headers, content = post_file(one_worker, first_body, "first-boundary", key)
    increase = peak_rss(worker_pid(one_worker)) - before
    replay = post_file(one_worker, retry_body, "another-boundary-on-retry", key)

    assert status == 201, content[:300]
    assert json.loads(content)["amount"] == 7
    assert replay[0] == 201
    assert replay[1]["Idempotent-Replayed"] == "true"
    assert replay[2] == content
    assert Charge.objects.count() == charges + 1
    print(f"\nmultipart upload: worker peak RSS +{increase / MB:.1f} MB for {SIZE // MB} MB")
    assert increase < STREAMED_BOUND, f"peak RSS grew by {increase / MB:.1f} MB"


# In-process: every database


@pytest.mark.django_db
def test_a_50mb_json_body_is_413_with_default_settings_and_the_view_does_not_run(client):
    body = b'{"amount": 5, "padding": "' + b"x" * SIZE + b'"}'

    response = client.post(
        "/plain/", body, content_type="application/json", headers={"Idempotency-Key": "big"}
    )

    assert_problem(response, 413, "request-too-large")
    assert Charge.objects.count() == 0
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db
def test_a_50mb_multipart_put_is_413_as_django_parses_multipart_only_for_post(client):
    # Non-POST multipart bodies are read whole to be parsed (fingerprint.py),
    # so Django's DATA_UPLOAD_MAX_MEMORY_SIZE applies to them, files included.
    body = b'--b\r\nContent-Disposition: form-data; name="f"; filename="f"\r\n\r\n'
    body += b"y" * SIZE + b"\r\n--b--\r\n"

    response = client.put(
        "/plain/", body, content_type="multipart/form-data; boundary=b",
        headers={"Idempotency-Key": "big-put"},
    )  # fmt: skip

    assert_problem(response, 413, "request-too-large")
    assert Charge.objects.count() == 0


@pytest.mark.django_db
def test_a_50mb_response_in_process_is_not_stored_and_its_retry_is_410(client):
    first = send(client, body={"kind": "big", "size": SIZE}, key="big-response")

    assert first.status_code == 201
    assert len(first.content) == SIZE
    record = IdempotencyRecord.objects.get()
    assert (record.status, record.response_body) == (Status.COMPLETED, None)
    assert_problem(
        send(client, body={"kind": "big", "size": SIZE}, key="big-response"),
        410, "response-not-replayable",
    )  # fmt: skip
    assert Charge.objects.count() == 1
