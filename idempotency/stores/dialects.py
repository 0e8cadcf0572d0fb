"""The SQL that differs between backends: the clock and insert-or-conflict.

Every time the store writes or compares is the database's, so app servers
whose clocks disagree still agree on expiry and locks (contract section 2).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import DateTimeField, Expression
from django.db.models.sql.compiler import SQLCompiler


@dataclass(frozen=True)
class Dialect:
    now: str
    # One placeholder, filled by ``offset()``: now plus a duration.
    now_plus: str
    # Seconds from now until ``{column}`` (negative once past; NULL for NULL).
    seconds_until: str
    # INSERT prefix and suffix around the column list and values; the insert
    # adds no row and raises nothing when (scope, key) exists.
    insert: str
    on_conflict: str
    returns_id: bool  # RETURNING id, rather than rowcount and lastrowid
    # A prefix that makes one statement fail at once rather than wait for a
    # row lock ("" where the database cannot say so per statement).
    nowait: str = ""
    false: str = "FALSE"
    # A SELECT suffix that reads the newest committed row and locks it, or
    # fails at once when another transaction holds it ("" on SQLite, whose
    # writers are serialized).
    lock_nowait: str = " FOR UPDATE NOWAIT"

    def offset(self, duration: timedelta) -> int | str:
        return duration // timedelta(microseconds=1)


class SQLite(Dialect):
    def offset(self, duration: timedelta) -> int | str:
        return f"{duration.total_seconds():+.6f} seconds"


_SQLITE_NOW = "STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'now')"

DIALECTS: dict[str, Dialect] = {
    # STATEMENT_TIMESTAMP, not NOW: NOW() is frozen at the start of the
    # transaction, which under ATOMIC_REQUESTS began before the view ran.
    "postgresql": Dialect(
        now="STATEMENT_TIMESTAMP()",
        now_plus="STATEMENT_TIMESTAMP() + %s * INTERVAL '1 microsecond'",
        seconds_until="EXTRACT(EPOCH FROM ({column} - STATEMENT_TIMESTAMP()))",
        insert="INSERT INTO",
        on_conflict="ON CONFLICT DO NOTHING RETURNING {id}",
        returns_id=True,
    ),
    # UTC_TIMESTAMP, not NOW: Django stores UTC in DATETIME columns, while NOW()
    # follows the session time zone.
    "mysql": Dialect(
        now="UTC_TIMESTAMP(6)",
        now_plus="UTC_TIMESTAMP(6) + INTERVAL %s MICROSECOND",
        seconds_until="TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), {column}) / 1000000",
        insert="INSERT IGNORE INTO",
        on_conflict="",
        returns_id=False,
    ),
    # Django stores SQLite datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff' text in
    # UTC, which compares correctly with this format as text. No RETURNING:
    # it needs SQLite 3.35, and Django 5.2 supports 3.31; rowcount and
    # lastrowid cost nothing in process.
    "sqlite": SQLite(
        now=_SQLITE_NOW,
        now_plus="STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'now', %s)",
        seconds_until="(JULIANDAY({column}) - JULIANDAY('now')) * 86400.0",
        insert="INSERT INTO",
        on_conflict="ON CONFLICT DO NOTHING",
        returns_id=False,
        false="0",
        lock_nowait="",
    ),
}


# MariaDB 10.3+: a lock wait of 0 for this statement only. MySQL has no
# per-statement form for it.
MARIADB = replace(DIALECTS["mysql"], nowait="SET STATEMENT innodb_lock_wait_timeout = 0 FOR ")


def dialect_for(connection: BaseDatabaseWrapper | str) -> Dialect:
    vendor = connection if isinstance(connection, str) else connection.vendor
    if not isinstance(connection, str) and getattr(connection, "mysql_is_mariadb", False):
        return MARIADB
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
