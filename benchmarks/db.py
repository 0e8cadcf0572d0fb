"""Scratch databases and table fills: everything here is created by the run
and dropped at its end, and refuses names that do not look like scratch."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.db import connections

ALIASES = ("default", "full")


def _pg_admin() -> Any:
    import psycopg

    db = settings.DATABASES["default"]
    return psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], password=db["PASSWORD"] or None,
        dbname="postgres", autocommit=True,
    )  # fmt: skip


def _names() -> list[str]:
    return [str(settings.DATABASES[alias]["NAME"]) for alias in ALIASES]


def check_scratch_name(name: str) -> None:
    if "bench" not in Path(name).name:
        raise SystemExit(f"Refusing database name {name!r}: it is dropped at the end of the "
                         "run, so it must contain 'bench' (a scratch database).")  # fmt: skip


def _mariadb_admin() -> Any:
    import MySQLdb

    db = settings.DATABASES["default"]
    return MySQLdb.connect(host=db["HOST"], port=int(db["PORT"]), user=db["USER"],
                           passwd=db["PASSWORD"])  # fmt: skip


def _engine() -> str:
    return str(settings.DATABASES["default"]["ENGINE"]).rsplit(".", 1)[1]


def create() -> None:
    """(Re)create the scratch databases and migrate both aliases."""
    drop()
    if _engine() == "postgresql":
        with _pg_admin() as admin:
            for name in _names():
                admin.execute(f'CREATE DATABASE "{name}"')
    elif _engine() == "mysql":
        admin = _mariadb_admin()
        try:
            for name in _names():
                admin.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        finally:
            admin.close()
    for alias in ALIASES:
        call_command("migrate", database=alias, run_syncdb=True, verbosity=0)
    create_token_user()


def create_token_user() -> None:
    """The user behind harness.TOKEN, for the token-authenticated flavour."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from benchmarks.harness import TOKEN

    user = get_user_model().objects.db_manager("default").create_user("bench")
    Token.objects.using("default").create(user=user, key=TOKEN)


def drop() -> None:
    connections.close_all()
    if _engine() == "postgresql":
        with _pg_admin() as admin:
            for name in _names():
                check_scratch_name(name)
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    elif _engine() == "mysql":
        admin = _mariadb_admin()
        try:
            for name in _names():
                check_scratch_name(name)
                admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            admin.close()
    else:
        for name in _names():
            check_scratch_name(name)
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(name + suffix).unlink(missing_ok=True)


def open_transactions() -> list[str]:
    """Transactions still open on the scratch databases, other than this
    connection's idle one: a scenario must leave none behind (a claim loop
    inside one atomic block once ran PostgreSQL out of locks)."""
    from django.db import connection

    found = ["the runner's connection is in an atomic block"] if connection.in_atomic_block else []
    if vendor() == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid, application_name, state, now() - xact_start FROM pg_stat_activity "
                "WHERE datname = ANY(%s) AND xact_start IS NOT NULL AND pid <> pg_backend_pid()",
                [_names()],
            )
            found += [f"backend {pid} ({name}, {state}, open for {age})"
                      for pid, name, state, age in cursor.fetchall()]  # fmt: skip
    elif vendor() == "mysql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT p.ID, p.STATE, t.trx_started FROM information_schema.INNODB_TRX t "
                "JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id "
                f"WHERE p.DB IN ({', '.join(['%s'] * len(_names()))}) "
                "AND p.ID <> CONNECTION_ID()",
                _names(),
            )
            found += [
                f"thread {pid} ({state}, since {start})" for pid, state, start in cursor.fetchall()
            ]
    return found


def vendor(alias: str = "default") -> str:
    return str(connections[alias].vendor)


def server_version() -> str:
    with connections["default"].cursor() as cursor:
        if vendor() == "postgresql":
            cursor.execute("SHOW server_version")
            return f"PostgreSQL {cursor.fetchone()[0]}"
        if vendor() == "mysql":
            cursor.execute("SELECT VERSION()")
            return f"MariaDB {cursor.fetchone()[0]}"
        cursor.execute("SELECT sqlite_version()")
        return f"SQLite {cursor.fetchone()[0]}"


def table() -> str:
    from idempotency.models import IdempotencyRecord

    return str(IdempotencyRecord._meta.db_table)


def fill(alias: str, rows: int, expired: bool) -> float:
    """Empty the record table of ``alias`` and fill it with ``rows`` completed
    records in one INSERT ... SELECT; returns the seconds the fill took.

    Every record shares the benchmark's scope (``anonymous``) and has a random
    key, so the benchmark's own keys land all over the unique index.
    """
    t = table()
    start = time.perf_counter()
    with connections[alias].cursor() as cursor:
        if vendor(alias) == "postgresql":
            cursor.execute(f"TRUNCATE {t}")
            # Ascending with the id, a millisecond apart, as records written
            # over time expire: the purge walks the index as in production.
            base = "now() - interval '2 hours'" if expired else "now() + interval '1 day'"
            expires = f"{base} + i * interval '1 millisecond'"
            cursor.execute(
                f"INSERT INTO {t} (scope, key, fingerprint, status, method, path, "
                "response_status, response_headers, response_body, version, locked_until, "
                "created_at, expires_at) "
                "SELECT 'anonymous', md5(i::text), md5('f' || i) || md5('g' || i), 'completed', "
                "'POST', '/orders/', 201, '{\"Content-Type\": \"application/json\"}', "
                "convert_to(repeat('x', 120), 'UTF8'), 2, NULL, now() - interval '1 day', "
                f"{expires} FROM generate_series(1, %s) AS i",
                [rows],
            )
        else:
            cursor.execute(f"DELETE FROM {t}")
            shift = "-2 hours" if expired else "+1 day"
            cursor.execute(
                f"WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq "
                f"WHERE i < %s) INSERT INTO {t} (scope, key, fingerprint, status, method, path, "
                "response_status, response_headers, response_body, version, locked_until, "
                "created_at, expires_at) "
                "SELECT 'anonymous', lower(hex(randomblob(16))), lower(hex(randomblob(32))), "
                "'completed', 'POST', '/orders/', 201, '{\"Content-Type\": \"application/json\"}', "
                "randomblob(120), 2, NULL, STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '-1 day'), "
                f"STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '{shift}', (i / 1000.0) || ' seconds') "
                "FROM seq",
                [rows],
            )
    settle(alias)
    return time.perf_counter() - start


def settle(alias: str) -> None:
    """VACUUM ANALYZE and CHECKPOINT after a fill, so that each side starts from
    the same state and autovacuum does not wake up in the middle of a timing."""
    connection = connections[alias]
    with connection.cursor() as cursor:
        if vendor(alias) == "postgresql":
            cursor.execute(f"VACUUM ANALYZE {table()}")
            cursor.execute("CHECKPOINT")
        else:
            cursor.execute("ANALYZE")


def count(alias: str) -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {table()}")
        return int(cursor.fetchone()[0])


def raw_delete_expired(alias: str) -> tuple[float, int]:
    """The baseline for the purge: one DELETE of every expired record."""
    now = "now()" if vendor(alias) == "postgresql" else "STRFTIME('%Y-%m-%d %H:%M:%f', 'now')"
    start = time.perf_counter()
    with connections[alias].cursor() as cursor:
        cursor.execute(f"DELETE FROM {table()} WHERE expires_at < {now}")
        deleted = cursor.rowcount
    return time.perf_counter() - start, int(deleted)


def machine_memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def probe() -> dict[str, float]:
    """What one database round trip and one durable commit cost right now,
    to read the ratios by: the package adds round trips and, for a new key,
    one commit (the claim's) before the view's own."""
    import statistics

    from benchmarks.models import Order

    def timed(sql: str, params: list[Any], n: int) -> float:
        times = []
        with connections["default"].cursor() as cursor:
            for _ in range(n):
                start = time.perf_counter()
                cursor.execute(sql, params)
                times.append(time.perf_counter() - start)
        return statistics.median(times)

    order = Order._meta.db_table
    result = {
        "round_trip_s": timed("SELECT 1", [], 300),
        "autocommit_insert_s": timed(
            f"INSERT INTO {order} (amount, currency, description, created_at) "
            "VALUES (%s, %s, %s, CURRENT_TIMESTAMP)", [1, "EUR", "probe"], 200),
    }  # fmt: skip
    Order.objects.all().delete()
    return result
