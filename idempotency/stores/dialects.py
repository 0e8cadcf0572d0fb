"""The SQL that differs between backends: the clock and insert-or-conflict.

Every time the store writes or compares is the database's, so app servers
whose clocks disagree still agree on expiry and locks (contract section 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import DateTimeField, Expression
from django.db.models.sql.compiler import SQLCompiler


@dataclass(frozen=True)
class Dialect:
    now: str
    # One placeholder, filled by ``offset()``: now plus a duration.
    now_plus: str
    # INSERT prefix and suffix around the column list and values; the insert
    # adds no row and raises nothing when (scope, key) exists.
    insert: str
    on_conflict: str
    returns_id: bool  # RETURNING id, rather than cursor.lastrowid

    def offset(self, duration: timedelta) -> int | str:
        return duration // timedelta(microseconds=1)


class SQLite(Dialect):
    def offset(self, duration: timedelta) -> int | str:
        return f"{duration.total_seconds():+.6f} seconds"


DIALECTS: dict[str, Dialect] = {
    # STATEMENT_TIMESTAMP, not NOW: NOW() is frozen at the start of the
    # transaction, which under ATOMIC_REQUESTS began before the view ran.
    "postgresql": Dialect(
        now="STATEMENT_TIMESTAMP()",
        now_plus="STATEMENT_TIMESTAMP() + %s * INTERVAL '1 microsecond'",
        insert="INSERT INTO",
        on_conflict="ON CONFLICT DO NOTHING RETURNING {id}",
        returns_id=True,
    ),
    # UTC_TIMESTAMP, not NOW: Django stores UTC in DATETIME columns, while NOW()
    # follows the session time zone.
    "mysql": Dialect(
        now="UTC_TIMESTAMP(6)",
        now_plus="UTC_TIMESTAMP(6) + INTERVAL %s MICROSECOND",
        insert="INSERT IGNORE INTO",
        on_conflict="",
        returns_id=False,
    ),
    # Django stores SQLite datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff' text in
    # UTC, which compares correctly with this format as text.
    "sqlite": SQLite(
        now="STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'now')",
        now_plus="STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'now', %s)",
        insert="INSERT INTO",
        on_conflict="ON CONFLICT DO NOTHING RETURNING {id}",
        returns_id=True,
    ),
}


def dialect_for(vendor: str) -> Dialect:
    try:
        return DIALECTS[vendor]
    except KeyError:
        raise NotImplementedError(
            f"idempotency supports PostgreSQL, MariaDB/MySQL and SQLite, not {vendor!r}."
        ) from None


class DatabaseNow(Expression):
    """The database's clock as an ORM expression, in the store's dialect.

    Django's ``Now()`` follows the session time zone on MySQL/MariaDB, while
    the store writes UTC; this uses the same clock the store writes with.
    """

    output_field = DateTimeField()

    def as_sql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper
    ) -> tuple[str, tuple[str | int, ...]]:
        return dialect_for(connection.vendor).now, ()
