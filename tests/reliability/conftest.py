"""Faults injected into a real deployment: gunicorn workers on PostgreSQL or
MariaDB, killed, outlived, cut off from their database.

Like tests/concurrency, the tests that start a server carry the
``concurrency`` marker and are reported as skipped on SQLite (one writer at a
time: the races prove nothing there, and a gunicorn process cannot reach
pytest-django's in-memory test database); the in-process tests of this folder
(hostile input and friends) run on every database.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.reliability.faults import LOCK_TIMEOUT, TALLIES, Markers
from tests.servers import Server, gunicorn_server


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TALLIES:
        terminalreporter.section("reliability tallies")
        for line in TALLIES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="package")
def markers(tmp_path_factory: Any) -> Markers:
    return Markers(tmp_path_factory.mktemp("markers"))


@pytest.fixture(scope="package")
def server(django_db_setup: None, tmp_path_factory: Any, markers: Markers) -> Iterator[Server]:
    """gunicorn, 4 sync workers, LOCK_TIMEOUT of 2 s, on the test database."""
    with gunicorn_server(
        tmp_path_factory.mktemp("gunicorn"),
        lock_timeout=LOCK_TIMEOUT,
        env={"IDEMPOTENCY_TEST_MARKER_DIR": str(markers.directory)},
    ) as started:
        yield started
