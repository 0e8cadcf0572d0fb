from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connections

# Files named *_postgresql.py test PostgreSQL-only behaviour: not collected
# elsewhere, rather than reported as skipped.
if os.environ.get("IDEMPOTENCY_TEST_DB", "sqlite") != "postgresql":
    collect_ignore_glob = ["*_postgresql.py"]


def pytest_report_header() -> str:
    return f"idempotency test database: {os.environ.get('IDEMPOTENCY_TEST_DB', 'sqlite')}"


@pytest.fixture(scope="session", autouse=True)
def database_reachable(django_db_blocker: pytest.FixtureRequest) -> None:
    """An unreachable database fails the run: a skipped suite is not a passed one."""
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        connection = connections["default"]
        try:
            connection.ensure_connection()
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
