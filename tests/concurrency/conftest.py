"""Real threads and processes against PostgreSQL or MariaDB.

SQLite serialises writers on one file lock, so these races prove nothing
there: on SQLite every test here is reported as skipped (tests/conftest.py),
through the ``concurrency`` marker each module carries.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import atomic_requests_set


@pytest.fixture
def atomic_requests_on() -> Iterator[None]:
    """``ATOMIC_REQUESTS`` on for the default database, in every thread."""
    with atomic_requests_set(True):
        yield
