"""Real threads and processes against PostgreSQL or MariaDB.

SQLite serialises writers on one file lock, so these races prove nothing
there: on SQLite the folder is not collected at all (rather than reported as
skipped tests).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.concurrency.race import TALLIES
from tests.conftest import atomic_requests_set

SERVER_DATABASES = ("postgresql", "mariadb")

if os.environ.get("IDEMPOTENCY_TEST_DB", "sqlite") not in SERVER_DATABASES:
    collect_ignore_glob = ["test_*.py"]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TALLIES:
        terminalreporter.section("concurrency tallies")
        for line in TALLIES:
            terminalreporter.write_line(line)


@pytest.fixture
def atomic_requests_on() -> Iterator[None]:
    """``ATOMIC_REQUESTS`` on for the default database, in every thread."""
    with atomic_requests_set(True):
        yield
