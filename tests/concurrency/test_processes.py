"""Concurrent duplicates across real processes: gunicorn with sync workers."""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, connections
from gunicorn.config import KNOWN_SETTINGS

from idempotency.models import IdempotencyRecord, Status
from tests.concurrency.race import (
    REQUESTS,
    ROUNDS,
    TALLIES,
    Answer,
    check_race,
    run_together,
)
from tests.testapp.models import Charge

pytestmark = pytest.mark.concurrency

PROJECT = Path(__file__).resolve().parents[2]
WORKERS = 4
# The server takes over a dead worker's lock after this many seconds.
LOCK_TIMEOUT = 3
SLOW = {"amount": 5, "sleep": 0.4}
# Recent gunicorn opens a control socket at one fixed path in $HOME, which two
# servers started at once (one per database) would fight over.
NO_CONTROL_SOCKET = [
    flag
    for setting in KNOWN_SETTINGS
    for flag in setting.cli or ()
    if flag == "--no-control-socket"
]


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    pid_dir: Path
    log: Path

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, key: str | None = None
    ) -> Answer:
        """One request on its own connection."""
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Idempotency-Key"] = key
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, json.dumps(body) if body is not None else None, headers)
            response = conn.getresponse()
            return Answer.of(response.status, response.getheaders(), response.read())
        finally:
            conn.close()

    def workers(self) -> set[int]:
        return child_pids(self.process.pid)


def child_pids(parent: int) -> set[int]:
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == parent and fields[0] != "Z":
            children.add(int(stat.parent.name))
    return children


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Any, timeout: float, what: str, server: Server | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    log = server.log.read_text() if server else ""
    raise AssertionError(f"{what}: not after {timeout}s\n{log}")


def stop(process: subprocess.Popen[bytes], workers: set[int]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
    for pid in workers:  # orphaned workers, if the master was killed
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def server(django_db_setup: None, tmp_path_factory: Any) -> Iterator[Server]:
    """gunicorn with sync workers, on the test database pytest-django created."""
    tmp = tmp_path_factory.mktemp("gunicorn")
    pid_dir = tmp / "pids"
    pid_dir.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "IDEMPOTENCY_TEST_DB": os.environ["IDEMPOTENCY_TEST_DB"],
        "IDEMPOTENCY_TEST_DB_NAME": connections["default"].settings_dict["NAME"],
        "IDEMPOTENCY_TEST_LOCK_TIMEOUT": str(LOCK_TIMEOUT),
        "IDEMPOTENCY_TEST_PID_DIR": str(pid_dir),
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp / "gunicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "tests.wsgi:application",
                "-w", str(WORKERS), "-b", f"127.0.0.1:{port}",
                "--timeout", "30", "--graceful-timeout", "5", *NO_CONTROL_SOCKET,
            ],
            cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = Server(process, port, pid_dir, log)
    workers: set[int] = set()
    try:

        def answers() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return server.request("GET", "/process/").status == 200
            except OSError:
                return False

        wait_until(answers, 30, "gunicorn answers", server)
        workers = wait_until(
            lambda: len(server.workers()) == WORKERS and server.workers(),
            30, f"{WORKERS} gunicorn workers", server,
        )  # fmt: skip
        yield server
        workers |= server.workers()
    finally:
        stop(process, workers)


def test_concurrent_duplicates_across_processes_run_the_view_once(transactional_db, server):
    for round_ in range(ROUNDS):
        key = str(uuid.uuid4())
        before = Charge.objects.count()

        answers = run_together(
            [functools.partial(server.request, "POST", "/plain/", SLOW, key)] * REQUESTS
        )

        original = check_race(
            answers, f"gunicorn -w {WORKERS} ({connection.vendor}) round {round_ + 1}"
        )
        assert Charge.objects.count() == before + 1
        assert Charge.objects.filter(pk=original.json["id"]).exists()
        later = server.request("POST", "/plain/", SLOW, key)
        assert (later.status, later.replayed, later.body) == (201, True, original.body)
        assert Charge.objects.count() == before + 1
        record = IdempotencyRecord.objects.get(key=key)
        assert (record.status, record.version) == (Status.COMPLETED, 2)
    assert not IdempotencyRecord.objects.filter(status=Status.IN_PROGRESS).exists()


def test_a_killed_worker_rolls_back_and_its_lock_is_taken_over_after_the_timeout(
    transactional_db, server
):
    key = uuid.uuid4().hex
    body = {"amount": 9, "sleep": 1.5}
    pid_file = server.pid_dir / key

    with ThreadPoolExecutor(max_workers=1) as pool:
        doomed = pool.submit(server.request, "POST", "/doomed-worker/", body, key)
        pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), 10, "pid file"))
        assert pid in server.workers()
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        with pytest.raises((http.client.HTTPException, OSError)):
            doomed.result(timeout=30)

    # The dead worker's transaction died with its connection; its claim did not.
    assert Charge.objects.count() == 0
    record = IdempotencyRecord.objects.get(key=key)
    assert (record.status, record.version) == (Status.IN_PROGRESS, 1)

    # A client that retries as Retry-After says: 409 while the lock holds, then
    # its retry takes the record over and runs the view once.
    retries: list[Answer] = []
    while True:
        answer = server.request("POST", "/doomed-worker/", body, key)
        retries.append(answer)
        if answer.status != 409:
            break
        assert answer.problem_slug == "request-in-progress"
        assert time.monotonic() - killed_at < LOCK_TIMEOUT + 10, retries
        time.sleep(int(answer.headers["retry-after"]))
    taken_over = retries[-1]

    assert len(retries) >= 2  # the first retry came while the dead worker's lock held
    assert taken_over.status == 201
    assert not taken_over.replayed
    assert taken_over.json["pid"] != pid
    charge = Charge.objects.get()
    assert (charge.pk, charge.label) == (taken_over.json["id"], f"pid:{taken_over.json['pid']}")
    record.refresh_from_db()
    assert (record.status, record.version) == (Status.COMPLETED, 3)
    assert bytes(record.response_body) == taken_over.body

    replay = server.request("POST", "/doomed-worker/", body, key)
    assert (replay.status, replay.replayed, replay.body) == (201, True, taken_over.body)
    assert Charge.objects.count() == 1
    assert not IdempotencyRecord.objects.filter(status=Status.IN_PROGRESS).exists()

    # gunicorn replaced the killed worker by itself.
    workers = wait_until(
        lambda: len(server.workers()) == WORKERS and server.workers(),
        30, "gunicorn replaced the killed worker", server,
    )  # fmt: skip
    assert pid not in workers
    TALLIES.append(
        f"killed worker ({connection.vendor}): client saw a dropped connection, "
        f"{len(retries) - 1} retries got 409 then 1 took over (201, record version "
        f"{record.version}), charges {Charge.objects.count()}, workers {len(workers)}"
    )
