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
from django.db import connections

from tests.concurrency.race import TALLIES

SERVER_DATABASES = ("postgresql", "mariadb")

if os.environ.get("IDEMPOTENCY_TEST_DB", "sqlite") not in SERVER_DATABASES:
    collect_ignore_glob = ["test_*.py"]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TALLIES:
        terminalreporter.section("concurrency tallies")
        for line in TALLIES:
            terminalreporter.write_line(line)


@pytest.fixture
def atomic_requests(settings: Any) -> Iterator[None]:
    """``ATOMIC_REQUESTS`` on for the default database, in every thread.

    Django reads the flag from the connection's settings dict on each request
    (``BaseHandler.make_view_atomic``); every thread's connection shares the
    dict in ``settings.DATABASES``, so it is changed in place and restored.
    """
    database = settings.DATABASES["default"]
    assert database is connections["default"].settings_dict
    assert database["ATOMIC_REQUESTS"] is False
    database["ATOMIC_REQUESTS"] = True
    try:
        yield
    finally:
        database["ATOMIC_REQUESTS"] = False
