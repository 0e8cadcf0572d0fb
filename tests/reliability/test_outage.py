"""The database goes away in the middle of a run, and comes back.

The gunicorn server reaches the database through a TCP proxy that the test
runs on a free 127.0.0.1 port (the real database server is never touched).
Client threads send a stream of requests, each with a new key, to a view that
writes a row and then sleeps; the test cuts the proxy (listening socket and
every live connection closed), holds the outage, and restores the proxy on the
same port. CI mode: 1 outage of 2 s; long mode
(IDEMPOTENCY_RELIABILITY_LONG=1): 5 outages of 3 s.

Requests that start and end during the outage must get 503 problem+json with
Retry-After, and their view must not have run. Requests in flight at the cut
may get 500 (the view's own query failed: Django's answer), 503 (the package
could not store the response) or 201 (committed just before); for them, as for
every key, at most one execution is ever committed, and a retry with the same
key after the outage gets 201 or a replay: exactly one committed execution.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection, connections

from idempotency.models import IdempotencyRecord, Status
from tests.concurrency.race import Answer
from tests.reliability.faults import (
    LOCK_TIMEOUT,
    LONG,
    PROBLEM_JSON,
    TALLIES,
    Markers,
    TcpProxy,
    committed,
    mode,
    record_of,
)
from tests.servers import Server, gunicorn_server

pytestmark = pytest.mark.concurrency

OUTAGES = mode(1, 5)
HOLD = 3.0 if LONG else 2.0  # seconds the database stays unreachable
BEFORE = AFTER = 1.0  # seconds of normal service around each outage
CLIENTS = 6
BODY = {"amount": 23, "sleep": 0.2}
# A client that is refused waits this long before its next request (a client
# that honoured Retry-After: 5 would send only a few requests per outage).
PAUSE = 0.2


@pytest.fixture(scope="module")
def proxy(django_db_setup: None) -> Iterator[TcpProxy]:
    database = connections["default"].settings_dict
    started = TcpProxy((database["HOST"], int(database["PORT"])))
    started.start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def proxied_server(proxy: TcpProxy, tmp_path_factory: Any, markers: Markers) -> Iterator[Server]:
    """gunicorn whose database HOST/PORT are the proxy's (tests/settings.py
    reads PGHOST/PGPORT and MYSQL_HOST/MYSQL_PORT)."""
    prefix = "PG" if connection.vendor == "postgresql" else "MYSQL_"
    with gunicorn_server(
        tmp_path_factory.mktemp("gunicorn-proxied"),
        lock_timeout=LOCK_TIMEOUT,
        env={
            f"{prefix}HOST": "127.0.0.1",
            f"{prefix}PORT": str(proxy.port),
            "IDEMPOTENCY_TEST_MARKER_DIR": str(markers.directory),
        },
    ) as started:
        yield started


@dataclass(frozen=True)
class Sent:
    key: str
    started: float
    ended: float
    answer: Answer | None  # None: the connection to gunicorn failed

    @property
    def status(self) -> int | str:
        return self.answer.status if self.answer else "no answer"


@dataclass(frozen=True)
class Outage:
    cut: float
    restored: float
    connections_cut: int


def send_stream(server: Server, stop: threading.Event, sent: list[Sent]) -> None:
    """One client: a new key per request, until ``stop``."""
    while not stop.is_set():
        key = uuid.uuid4().hex
        started = time.monotonic()
        try:
            answer: Answer | None = server.request("POST", "/fault/", BODY, key, timeout=20)
        except OSError:
            answer = None
        sent.append(Sent(key, started, time.monotonic(), answer))
        if answer is None or answer.status != 201:
            time.sleep(PAUSE)


def retry_until_done(server: Server, key: str, deadline: float) -> list[Answer]:
    """Retries the key until it gets 201 or a replay (409 and 503 are retried)."""
    answers: list[Answer] = []
    while not answers or answers[-1].status in (409, 503):
        assert time.monotonic() < deadline, (key, answers)
        if answers:
            assert answers[-1].problem_slug in ("request-in-progress", "store-unavailable")
            time.sleep(min(int(answers[-1].headers["retry-after"]), 1))
        answers.append(server.request("POST", "/fault/", BODY, key))
    return answers


def assert_store_unavailable(answer: Answer | None) -> None:
    assert answer is not None
    assert answer.status == 503, (answer.status, answer.body)
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert answer.problem_slug == "store-unavailable"
    assert int(answer.headers["retry-after"]) > 0


def test_a_database_outage_refuses_requests_unrun_and_service_resumes_by_itself(
    transactional_db, proxy, proxied_server, markers
):
    server = proxied_server
    sent: list[Sent] = []
    outages: list[Outage] = []
    stop = threading.Event()
    clients = [
        threading.Thread(target=send_stream, args=(server, stop, sent)) for _ in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    try:
        for _ in range(OUTAGES):
            time.sleep(BEFORE)
            cut = time.monotonic()
            live = proxy.cut()
            time.sleep(HOLD)
            restored = time.monotonic()
            proxy.restore()
            outages.append(Outage(cut, restored, live))
        time.sleep(AFTER)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=30)
    assert not any(client.is_alive() for client in clients)

    # Classify every request by when it ran relative to the outages.
    kinds: dict[str, Counter[int | str]] = {
        "normal": Counter(), "refused": Counter(), "in flight": Counter(), "at restore": Counter()
    }  # fmt: skip
    retry: list[Sent] = []
    for request in sent:
        if any(o.cut < request.started and request.ended < o.restored for o in outages):
            # Started and ended while the database was unreachable: refused
            # before the view ran, and nothing of it exists.
            assert_store_unavailable(request.answer)
            assert markers.runs(request.key) == []
            assert committed(request.key) == []
            assert record_of(request.key) is None
            kind = "refused"
        elif any(request.started < o.cut < request.ended for o in outages):
            assert request.status in (201, 500, 503), (request.status, request.answer)
            kind = "in flight"
        elif any(request.started < o.restored < request.ended for o in outages):
            assert request.status in (201, 503), (request.status, request.answer)
            kind = "at restore"
        else:
            # Before the first cut, or started after a restore: service as usual.
            assert request.answer is not None
            assert (request.answer.status, request.answer.replayed) == (201, False)
            kind = "normal"
        kinds[kind][request.status] += 1
        # At most one committed execution per key, whatever happened.
        assert len(committed(request.key)) <= 1
        if request.status != 201:
            retry.append(request)
    assert kinds["refused"].total() > 0
    assert kinds["normal"].total() > 0

    # Every key that did not get its 201 is retried with the same request.
    deadline = time.monotonic() + LOCK_TIMEOUT + 30
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        retried = list(pool.map(lambda r: retry_until_done(server, r.key, deadline), retry))
    finals: Counter[str] = Counter()
    for request, answers in zip(retry, retried, strict=True):
        final = answers[-1]
        assert final.status == 201, (final.status, final.body)
        assert committed(request.key) == [final.json["id"]]
        if any(o.cut < request.started and request.ended < o.restored for o in outages):
            # A refused request's view first ran on the retry.
            assert not final.replayed
            assert len(markers.runs(request.key)) == 1
        finals["replay" if final.replayed else "201"] += 1
        finals["409 on the way"] += sum(a.status == 409 for a in answers)
    for request in sent:
        assert len(committed(request.key)) == 1
        record = record_of(request.key)
        assert record is not None and record.status == Status.COMPLETED
    assert not IdempotencyRecord.objects.filter(status=Status.IN_PROGRESS).exists()

    executions = sum(len(markers.runs(r.key)) for r in sent)
    TALLIES.append(
        f"outage ({connection.vendor}): {len(outages)} outages of {HOLD}s, "
        f"{sum(o.connections_cut for o in outages)} live database connections cut, "
        f"{len(sent)} requests from {CLIENTS} clients: "
        + ", ".join(f"{kind} {dict(counts)}" for kind, counts in kinds.items())
        + f"; {len(retry)} keys retried after: {dict(finals)}; "
        f"executions={executions} committed rows={len(sent)}"
    )
