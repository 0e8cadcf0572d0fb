from __future__ import annotations

import os

import pytest
from django.db import connections


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
