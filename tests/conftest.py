from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connections

from tests.example_runs import example_env  # noqa: F401 - a fixture, for the example project's tests

TEST_DB = os.environ.get("IDEMPOTENCY_TEST_DB", "sqlite")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that prove nothing on this database are reported as skipped, with why."""
    for item in items:
        path = str(item.path)
        if path.endswith("_postgresql.py") and TEST_DB != "postgresql":
            item.add_marker(pytest.mark.skip(reason="PostgreSQL-only behaviour"))
        elif item.get_closest_marker("concurrency") and TEST_DB == "sqlite":
            item.add_marker(pytest.mark.skip(
                reason="SQLite serialises writers on one file lock: races prove nothing there"
            ))  # fmt: skip
        elif item.get_closest_marker("server_process") and TEST_DB == "sqlite":
            item.add_marker(pytest.mark.skip(
                reason="a server process cannot reach pytest-django's in-memory SQLite test database"
            ))  # fmt: skip


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The numbers behind a green run of the races and the worker tests."""
    from tests.concurrency.race import TALLIES

    if TALLIES:
        terminalreporter.section("concurrency tallies")
        for line in TALLIES:
            terminalreporter.write_line(line)


def pytest_report_header() -> str:
    return f"idempotency test database: {TEST_DB}"


@pytest.fixture(scope="session", autouse=True)
def database_reachable(django_db_blocker: pytest.FixtureRequest) -> None:
    """An unreachable database fails the run: a skipped suite is not a passed one."""
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        connection = connections["default"]
        try:
            connection.ensure_connection()
            for alias in connections:
                # Django 6.1's JSONField check asks every database whether it
                # supports JSON, a query: asked once here, the answer is cached.
                connections[alias].features.supports_json_field  # noqa: B018
        except Exception as error:  # any driver error: say which database and why
            pytest.exit(
                f"The {connection.vendor} test database is unreachable ({error}); "
                "start it (see README.md) or choose another with IDEMPOTENCY_TEST_DB.",
                returncode=3,
            )


@contextmanager
def atomic_requests_set(value: bool) -> Iterator[None]:
    """Turn ``ATOMIC_REQUESTS`` on or off for the default database, in every thread.

    Django reads the flag from the connection's settings dict on every request
    (``BaseHandler.make_view_atomic``), so it is changed in place; pytest-django's
    ``settings`` fixture would not undo an in-place change, hence the restore.
    """
    database = connections["default"].settings_dict
    previous = database.get("ATOMIC_REQUESTS", False)
    database["ATOMIC_REQUESTS"] = value
    try:
        yield
    finally:
        database["ATOMIC_REQUESTS"] = previous


@pytest.fixture(params=[False, True], ids=["autocommit", "atomic-requests"])
def atomic_requests(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Run the test once with ``ATOMIC_REQUESTS`` off and once with it on."""
    with atomic_requests_set(request.param):
        yield request.param
