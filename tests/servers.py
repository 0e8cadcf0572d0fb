"""Real servers on the test database: gunicorn for tests/concurrency and
tests/reliability, uvicorn for tests/uvicorn.

``gunicorn_server`` starts ``tests.wsgi`` with sync workers on a free
127.0.0.1 port, pointed at the database pytest-django created, and stops the
master and every worker it saw by PID. The module-scoped ``server`` fixture is
the one tests/concurrency/test_processes.py uses. ``uvicorn_server`` starts
``tests.asgi`` the same way, in one process.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from gunicorn.config import KNOWN_SETTINGS

from tests.concurrency.race import Answer

PROJECT = Path(__file__).resolve().parents[1]
WORKERS = 4
# The server takes over a dead worker's lock after this many seconds.
LOCK_TIMEOUT = 3
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
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        key: str | None = None,
        timeout: float = 30,
    ) -> Answer:
        """One request on its own connection."""
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Idempotency-Key"] = key
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
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


def server_environment(
    pid_dir: Path, lock_timeout: float, env: Mapping[str, str] | None
) -> dict[str, str]:
    """The environment of a server process: the test settings, on the test
    database pytest-django created; ``env`` adds to (or overrides) it."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "IDEMPOTENCY_TEST_DB": os.environ["IDEMPOTENCY_TEST_DB"],
        "IDEMPOTENCY_TEST_DB_NAME": connections["default"].settings_dict["NAME"],
        "IDEMPOTENCY_TEST_LOCK_TIMEOUT": str(lock_timeout),
        "IDEMPOTENCY_TEST_PID_DIR": str(pid_dir),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }


def wait_for_answers(server: Server, what: str) -> None:
    """Until the server answers a plain GET (its process still alive)."""

    def answers() -> bool:
        assert server.process.poll() is None, server.log.read_text()
        try:
            return server.request("GET", "/process/").status == 200
        except OSError:
            return False

    wait_until(answers, 30, what, server)


@contextlib.contextmanager
def gunicorn_server(
    tmp: Path,
    *,
    workers: int = WORKERS,
    lock_timeout: float = LOCK_TIMEOUT,
    env: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """gunicorn with ``workers`` sync workers, on the test database
    pytest-django created; ``env`` adds to (or overrides) its environment."""
    pid_dir = tmp / "pids"
    pid_dir.mkdir(exist_ok=True)
    port = free_port()
    log = tmp / "gunicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "tests.wsgi:application",
                "-w", str(workers), "-b", f"127.0.0.1:{port}",
                "--timeout", "30", "--graceful-timeout", "5", *NO_CONTROL_SOCKET,
            ],
            cwd=PROJECT, env=server_environment(pid_dir, lock_timeout, env), stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = Server(process, port, pid_dir, log)
    seen: set[int] = set()
    try:
        wait_for_answers(server, "gunicorn answers")
        seen = wait_until(
            lambda: len(server.workers()) == workers and server.workers(),
            30, f"{workers} gunicorn workers", server,
        )  # fmt: skip
        yield server
        seen |= server.workers()
    finally:
        stop(process, seen)


@contextlib.contextmanager
def uvicorn_server(
    tmp: Path,
    *,
    lock_timeout: float = LOCK_TIMEOUT,
    env: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """uvicorn (one process, one event loop) serving ``tests.asgi``, on the
    test database pytest-django created. Its log (``server.log``) holds
    uvicorn's output and every traceback Django logged."""
    pid_dir = tmp / "pids"
    pid_dir.mkdir(exist_ok=True)
    port = free_port()
    log = tmp / "uvicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "tests.asgi:application",
                "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
                "--timeout-graceful-shutdown", "5",
            ],
            cwd=PROJECT, env=server_environment(pid_dir, lock_timeout, env), stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = Server(process, port, pid_dir, log)
    try:
        wait_for_answers(server, "uvicorn answers")
        yield server
    finally:
        stop(process, server.workers())


@pytest.fixture(scope="module")
def server(django_db_setup: None, tmp_path_factory: Any) -> Iterator[Server]:
    """gunicorn with sync workers, on the test database pytest-django created."""
    with gunicorn_server(tmp_path_factory.mktemp("gunicorn")) as started:
        yield started
