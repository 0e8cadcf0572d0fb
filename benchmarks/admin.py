"""Scenario 7: every admin page at a million records, and what its indexes cost a claim.

``python -m benchmarks.admin [--database postgresql|mariadb|sqlite] [--rows N]``
runs in its own process (``python -m benchmarks --only admin`` starts it):
the admin needs apps and middleware that the light stack of the other
scenarios leaves out. It fills a scratch database with ``rows`` records
(ids in time order, 20 % expired, 0.05 % in progress, 2 % 4xx, 1 % 3xx, 5 %
sensitive, 30 % in the shared ``anonymous`` scope), then renders every page
through Django's test client as a logged-in superuser: the package's admin
and, on the same table, the configuration it replaced (exact counts, the date
hierarchy, Django's search), median of ``--renders`` renders after one warm-up.
On PostgreSQL it then times the store's claim with and without each admin
index (ABBA), and checks that the completion UPDATE stays HOT.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

SCRATCH = "idempotency_bench_admin"
SEARCH_KEY = "bench-admin-search-key"
BUDGET_S = 0.100  # the target for every page


def configure(database: str, directory: str) -> None:
    from django.conf import settings

    databases = {
        "postgresql": {"ENGINE": "django.db.backends.postgresql", "NAME": SCRATCH,
                       "HOST": "127.0.0.1", "PORT": "5432", "USER": "postgres"},
        "mariadb": {"ENGINE": "django.db.backends.mysql", "NAME": SCRATCH, "HOST": "127.0.0.1",
                    "PORT": "3306", "USER": "root", "PASSWORD": "",
                    "OPTIONS": {"charset": "utf8mb4"}},
        "sqlite": {"ENGINE": "django.db.backends.sqlite3",
                   "NAME": os.path.join(directory, f"{SCRATCH}.sqlite3")},
    }  # fmt: skip
    settings.configure(
        SECRET_KEY="benchmarks-only", DEBUG=False, USE_TZ=True, TIME_ZONE="UTC",
        ALLOWED_HOSTS=["testserver"], ROOT_URLCONF=__name__,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=["django.contrib.admin", "django.contrib.auth",
                        "django.contrib.contenttypes", "django.contrib.sessions",
                        "django.contrib.messages", "idempotency"],
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware",
                    "django.contrib.auth.middleware.AuthenticationMiddleware",
                    "django.contrib.messages.middleware.MessageMiddleware"],
        SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates",
                    "APP_DIRS": True, "OPTIONS": {"context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages"]}}],
        DATABASES={"default": databases[database]}, STATIC_URL="/static/",
    )  # fmt: skip


def _urls() -> list[Any]:
    from django.contrib import admin
    from django.urls import path

    from idempotency.admin.filters import ExpiredFilter, ResponseStatusClassFilter
    from idempotency.models import IdempotencyRecord

    class Before(admin.ModelAdmin):  # type: ignore[type-arg]
        """The admin's configuration before this scenario's work (on today's schema)."""

        list_display = ("key", "scope", "status", "method", "path", "response_status",
                        "created_at", "expires_at")  # fmt: skip
        list_filter = ("status", ExpiredFilter, ResponseStatusClassFilter)
        search_fields = ("key__exact", "scope__exact", "path__startswith")
        date_hierarchy = "created_at"
        ordering = ("-pk",)
        show_full_result_count = False
        show_facets = admin.ShowFacets.NEVER

    before = admin.AdminSite(name="before")
    before.register(IdempotencyRecord, Before)
    return [path("admin/", admin.site.urls), path("before/", before.urls)]


urlpatterns: list[Any] = []


def create_database(database: str) -> None:
    if database == "postgresql":
        import psycopg

        with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres",
                             autocommit=True) as conn:  # fmt: skip
            conn.execute(f'DROP DATABASE IF EXISTS "{SCRATCH}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{SCRATCH}"')
    elif database == "mariadb":
        import MySQLdb

        conn = MySQLdb.connect(host="127.0.0.1", user="root", passwd="")
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{SCRATCH}`")
        conn.cursor().execute(f"CREATE DATABASE `{SCRATCH}` CHARACTER SET utf8mb4")
        conn.close()


def drop_database(database: str) -> None:
    from django.db import connections

    connections.close_all()
    if database == "postgresql":
        import psycopg

        with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres",
                             autocommit=True) as conn:  # fmt: skip
            conn.execute(f'DROP DATABASE IF EXISTS "{SCRATCH}" WITH (FORCE)')
    elif database == "mariadb":
        import MySQLdb

        conn = MySQLdb.connect(host="127.0.0.1", user="root", passwd="")
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{SCRATCH}`")
        conn.close()


# One row per i in 1..rows; the shapes are described in the module docstring.
# str.format fields: {t} the table, {rows}, {span} seconds; {{ }} are JSON braces.
FILL = {
    "postgresql": """
INSERT INTO {t} (scope, key, fingerprint, status, method, path, response_status,
  response_headers, response_body, sensitive, version, locked_until, created_at, expires_at)
SELECT CASE WHEN i % 10 < 3 THEN 'anonymous' ELSE 'user:' || (i % 7919) END,
  md5(i::text) || md5('k' || i), md5('f' || i) || md5('g' || i),
  CASE WHEN i % 2000 = 7 OR i > {rows} - 50 THEN 'in_progress' ELSE 'completed' END, 'POST',
  CASE i % 10 WHEN 0 THEN '/payments/' WHEN 1 THEN '/payments/' WHEN 2 THEN '/payments/'
    WHEN 3 THEN '/payments/' WHEN 4 THEN '/orders/' || (i % 5000) || '/refunds/'
    WHEN 5 THEN '/orders/' || (i % 5000) || '/refunds/'
    WHEN 6 THEN '/orders/' || (i % 5000) || '/refunds/' ELSE '/api/v2/transfers/' END,
  CASE WHEN i % 2000 = 7 OR i > {rows} - 50 THEN NULL WHEN i % 50 = 3 THEN 422
    WHEN i % 100 = 5 THEN 303 ELSE 201 END,
  '{{"Content-Type": "application/json", "Location": "/payments/1/"}}',
  CASE WHEN i % 2000 = 7 OR i > {rows} - 50 THEN NULL ELSE convert_to('{{"id": ' || i ||
    ', "status": "succeeded", "amount": 1000, "currency": "EUR", "description": "'
    || repeat('x', 80) || '"}}', 'UTF8') END,
  i % 20 = 0, 2,
  base + (i * {span}.0 / {rows}) * interval '1 second' + interval '60 seconds',
  base + (i * {span}.0 / {rows}) * interval '1 second',
  base + (i * {span}.0 / {rows}) * interval '1 second' + interval '24 hours'
FROM generate_series(1, {rows}) AS i, (SELECT now() - {span} * interval '1 second' AS base) b
""",
    "mariadb": """
INSERT INTO {t} (scope, `key`, fingerprint, status, method, path, response_status,
  response_headers, response_body, `sensitive`, version, locked_until, created_at, expires_at)
SELECT IF(i % 10 < 3, 'anonymous', CONCAT('user:', i % 7919)),
  CONCAT(md5(i), md5(CONCAT('k', i))), CONCAT(md5(CONCAT('f', i)), md5(CONCAT('g', i))),
  IF(i % 2000 = 7 OR i > {rows} - 50, 'in_progress', 'completed'), 'POST',
  CASE WHEN i % 10 < 4 THEN '/payments/' WHEN i % 10 < 7
    THEN CONCAT('/orders/', i % 5000, '/refunds/') ELSE '/api/v2/transfers/' END,
  CASE WHEN i % 2000 = 7 OR i > {rows} - 50 THEN NULL WHEN i % 50 = 3 THEN 422
    WHEN i % 100 = 5 THEN 303 ELSE 201 END,
  '{{"Content-Type": "application/json", "Location": "/payments/1/"}}',
  IF(i % 2000 = 7 OR i > {rows} - 50, NULL, CONCAT('{{"id": ', i,
    ', "status": "succeeded", "amount": 1000, "currency": "EUR", "description": "',
    REPEAT('x', 80), '"}}')),
  i % 20 = 0, 2,
  UTC_TIMESTAMP(6) - INTERVAL {span} SECOND + INTERVAL (i * {span}.0 / {rows} + 60) SECOND,
  UTC_TIMESTAMP(6) - INTERVAL {span} SECOND + INTERVAL (i * {span}.0 / {rows}) SECOND,
  UTC_TIMESTAMP(6) - INTERVAL {span} SECOND + INTERVAL (i * {span}.0 / {rows} + 86400) SECOND
FROM (SELECT seq AS i FROM seq_1_to_{rows}) s
""",
    "sqlite": """
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {rows})
INSERT INTO {t} (scope, key, fingerprint, status, method, path, response_status,
  response_headers, response_body, sensitive, version, locked_until, created_at, expires_at)
SELECT CASE WHEN i % 10 < 3 THEN 'anonymous' ELSE 'user:' || (i % 7919) END,
  lower(hex(randomblob(32))), lower(hex(randomblob(32))),
  CASE WHEN i % 2000 = 7 OR i > {rows} - 50 THEN 'in_progress' ELSE 'completed' END, 'POST',
  CASE WHEN i % 10 < 4 THEN '/payments/' WHEN i % 10 < 7
    THEN '/orders/' || (i % 5000) || '/refunds/' ELSE '/api/v2/transfers/' END,
  CASE WHEN i % 2000 = 7 OR i > {rows} - 50 THEN NULL WHEN i % 50 = 3 THEN 422
    WHEN i % 100 = 5 THEN 303 ELSE 201 END,
  '{{"Content-Type": "application/json", "Location": "/payments/1/"}}',
  CASE WHEN i % 2000 = 7 OR i > {rows} - 50 THEN NULL ELSE CAST('{{"id": ' || i ||
    ', "status": "succeeded", "amount": 1000, "currency": "EUR", "description": "' ||
    printf('%.80c', 'x') || '"}}' AS BLOB) END,
  i % 20 = 0, 2,
  STRFTIME('%Y-%m-%d %H:%M:%f', 'now', (i * {span}.0 / {rows} - {span} + 60) || ' seconds'),
  STRFTIME('%Y-%m-%d %H:%M:%f', 'now', (i * {span}.0 / {rows} - {span}) || ' seconds'),
  STRFTIME('%Y-%m-%d %H:%M:%f', 'now', (i * {span}.0 / {rows} - {span} + 86400) || ' seconds')
FROM seq
""",
}


def fill(database: str, rows: int) -> float:
    from django.db import connection

    from idempotency.keys import digest
    from idempotency.models import IdempotencyRecord

    table = connection.ops.quote_name(IdempotencyRecord._meta.db_table)
    # 28.8 hours of records with a 24-hour TTL: the oldest fifth has expired.
    sql = FILL[database].format(t=table, rows=rows, span=28 * 3600 + 48 * 60)
    start = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(sql)
        # One record of a known key, for the search by key.
        middle = IdempotencyRecord.objects.order_by("pk").values_list("pk", flat=True)[rows // 2]
        IdempotencyRecord.objects.filter(pk=middle).update(key=digest(SEARCH_KEY))
        cursor.execute({"postgresql": f"VACUUM ANALYZE {table}",
                        "mariadb": f"ANALYZE TABLE {table}", "sqlite": "ANALYZE"}[database])  # fmt: skip
        if database == "mariadb":
            cursor.fetchall()
    return time.perf_counter() - start


def pages() -> dict[str, tuple[str, dict[str, str]]]:
    from idempotency.models import IdempotencyRecord

    detail = IdempotencyRecord.objects.filter(status="completed", sensitive=False).order_by("pk")
    pk = detail.values_list("pk", flat=True)[detail.count() // 3]
    return {
        "list, unfiltered": ("", {}),
        "list, page 2": ("", {"p": "2"}),
        "search: a key": ("", {"q": SEARCH_KEY}),
        "search: a scope (~90 records)": ("", {"q": "user:42"}),
        "search: the anonymous scope (30 %)": ("", {"q": "anonymous"}),
        "search: a path prefix (~60)": ("", {"q": "/orders/42/"}),
        "search: a path prefix (40 %)": ("", {"q": "/payments/"}),
        "search: no match": ("", {"q": "/nothing/"}),
        "status = in progress (0.05 %)": ("", {"status__exact": "in_progress"}),
        "status = completed": ("", {"status__exact": "completed"}),
        "expired = yes (20 %)": ("", {"expired": "yes"}),
        "expired = no": ("", {"expired": "no"}),
        "response 2xx": ("", {"response_status_class": "2xx"}),
        "response 3xx (1 %)": ("", {"response_status_class": "3xx"}),
        "response 4xx (2 %)": ("", {"response_status_class": "4xx"}),
        "response none (in progress)": ("", {"response_status_class": "none"}),
        "detail page": (f"{pk}/change/", {}),
        "delete confirmation": (f"{pk}/delete/", {}),
    }


def render(client: Any, url: str, params: dict[str, str], renders: int) -> dict[str, Any]:
    from django.db import connection

    sql: list[float] = []

    def timed(execute: Any, query: str, *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return execute(query, *args)
        finally:
            sql.append(time.perf_counter() - start)

    totals, sql_totals, queries = [], [], 0
    for attempt in range(renders + 1):
        sql.clear()
        with connection.execute_wrapper(timed):
            start = time.perf_counter()
            response = client.get(url, params)
            elapsed = time.perf_counter() - start
        if response.status_code != 200:
            raise RuntimeError(f"{url} {params}: {response.status_code}")
        if attempt:  # the first render warms caches
            totals.append(elapsed)
            sql_totals.append(sum(sql))
            queries = len(sql)
    return {"total_s": statistics.median(totals), "sql_s": statistics.median(sql_totals),
            "queries": queries}  # fmt: skip


def measure_pages(renders: int, before_renders: int) -> dict[str, Any]:
    from django.contrib.auth.models import User
    from django.test import Client

    user = User.objects.create_superuser("bench", "bench@example.com", "bench")
    client = Client()
    client.force_login(user)
    results = {}
    for name, (suffix, params) in pages().items():
        print(f"[benchmarks.admin] {name}", file=sys.stderr, flush=True)
        now = render(client, f"/admin/idempotency/idempotencyrecord/{suffix}", params, renders)
        then = (
            render(
                client, f"/before/idempotency/idempotencyrecord/{suffix}", params, before_renders
            )
            if not suffix.endswith("delete/")  # Django's own delete page: not comparable
            else None
        )
        results[name] = {"admin": now, "before": then}
    return results


def index_costs(rounds: int, claims: int) -> dict[str, Any]:
    """The store's claim with each admin index present or dropped, ABBA over variants.

    Per claim: the time in autocommit (each claim its own commit, as a request
    makes it), the time inside one transaction (without the commit's WAL
    flush, which hides the index's own work), and the WAL bytes it writes.
    """
    from django.db import connection, transaction

    from idempotency.stores.database import DatabaseRecordStore

    store = DatabaseRecordStore("default")
    table = "idempotency_idempotencyrecord"
    indexes = {
        "key": f"CREATE INDEX idempotency_key_idx ON {table} (key)",
        "path": f"CREATE INDEX idempotency_path_idx ON {table} (path text_pattern_ops)",
    }
    variants = {"neither": (), "key": ("key",), "path": ("path",), "both": ("key", "path")}
    present = {"key", "path"}
    builds: dict[str, list[float]] = {name: [] for name in indexes}
    results: dict[str, dict[str, list[float]]] = {
        name: {"autocommit_s": [], "in_transaction_s": [], "wal_bytes": []} for name in variants
    }
    serial = iter(range(10**9))

    def arrange(wanted: tuple[str, ...]) -> None:
        with connection.cursor() as cursor:
            for name in sorted(present - set(wanted)):
                cursor.execute(f"DROP INDEX idempotency_{name}_idx")
                present.discard(name)
            for name in sorted(set(wanted) - present):
                start = time.perf_counter()
                cursor.execute(indexes[name])
                builds[name].append(time.perf_counter() - start)
                present.add(name)
            cursor.execute("CHECKPOINT")

    def wal() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")
            return int(cursor.fetchone()[0])

    def block() -> list[float]:
        times = []
        for _ in range(claims):
            attempt = _attempt(next(serial))
            start = time.perf_counter()
            store.claim(attempt)
            times.append(time.perf_counter() - start)
        return times

    def run(variant: str) -> None:
        arrange(variants[variant])
        result = results[variant]
        result["autocommit_s"].append(statistics.median(block()))
        before = wal()
        with transaction.atomic():
            result["in_transaction_s"].append(statistics.median(block()))
        result["wal_bytes"].append((wal() - before) / claims)

    names = list(variants)
    for r in range(rounds):
        for variant in names if r % 2 == 0 else list(reversed(names)):
            run(variant)
    arrange(("key", "path"))
    median = {
        name: {what: statistics.median(values) for what, values in result.items()}
        for name, result in results.items()
    }
    return {
        "claim": median,
        "index_build_s": {name: statistics.median(values) for name, values in builds.items()},
        "completions_hot": hot_updates(store, next(serial)),
        "completions_hot_with_a_status_index": hot_updates(
            store, next(serial) + 10**6, status=True
        ),
    }


def _attempt(n: int, scope: str | None = None, atomic: bool = False) -> Any:
    """A claim alone (``atomic`` False: no transaction is left open for a call)."""
    from idempotency.stores.base import Attempt

    return Attempt(scope=scope or f"user:{n % 7919}", key=f"bench-claim-{n:012d}" * 2,
                   fingerprint="f" * 64, method="POST", path=f"/orders/{n}/refunds/",
                   ttl=timedelta(hours=24), lock_for=timedelta(seconds=60),
                   atomic=atomic)  # fmt: skip


def hot_updates(store: Any, first: int, n: int = 500, status: bool = False) -> dict[str, int]:
    """Claim then complete ``n`` keys, each in its own commit as requests do: how many
    completions were HOT (``status``: with an index on ``status``, the counter-example)."""
    from django.db import connection

    from idempotency.stores.base import StoredResponse

    table = "idempotency_idempotencyrecord"

    def counters() -> tuple[int, int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_force_next_flush()")
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                           "WHERE relname = %s", [table])  # fmt: skip
            row = cursor.fetchone()
            return int(row[0]), int(row[1])

    with connection.cursor() as cursor:
        if status:
            cursor.execute(f"CREATE INDEX bench_status_idx ON {table} (status)")
        before = counters()
        response = StoredResponse(201, {"Content-Type": "application/json"}, b'{"id": 1}')
        for i in range(first, first + n):
            claim = store.claim(_attempt(i, scope="hot", atomic=True))
            store.finish(claim, response, lambda: None)
        after = counters()
        if status:
            cursor.execute("DROP INDEX bench_status_idx")
    return {"updates": after[0] - before[0], "hot": after[1] - before[1]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.admin", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--database", choices=["postgresql", "mariadb", "sqlite"],
                        default="postgresql")  # fmt: skip
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--renders", type=int, default=7)
    parser.add_argument("--before-renders", type=int, default=3)
    parser.add_argument("--claim-rounds", type=int, default=4)
    parser.add_argument("--claims", type=int, default=400, help="claims per block")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--no-index-costs", action="store_true", help="skip the claim timings")
    args = parser.parse_args(argv)

    import tempfile

    directory = tempfile.mkdtemp(prefix="idempotency-bench-admin-")
    configure(args.database, directory)
    import django

    django.setup()
    urlpatterns.extend(_urls())
    from django.core.management import call_command

    create_database(args.database)
    report: dict[str, Any] = {"database": args.database, "rows": args.rows}
    try:
        call_command("migrate", verbosity=0)
        print(f"[benchmarks.admin] filling {args.rows:,} records", file=sys.stderr, flush=True)
        report["fill_s"] = fill(args.database, args.rows)
        report["pages"] = measure_pages(args.renders, args.before_renders)
        if args.database == "postgresql" and not args.no_index_costs:
            print("[benchmarks.admin] claim cost per index", file=sys.stderr, flush=True)
            report["index_costs"] = index_costs(args.claim_rounds, args.claims)
    finally:
        if not args.keep_database:
            drop_database(args.database)
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def scenario(database: str, rows: int) -> dict[str, Any]:
    """``python -m benchmarks --only admin``: this module in a child process, as report rows."""
    import subprocess
    import tempfile

    from benchmarks.harness import PROJECT
    from benchmarks.scenarios import row

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "admin.json"
        subprocess.run([sys.executable, "-m", "benchmarks.admin", f"--database={database}",
                        f"--rows={rows}", f"--json={out}"], cwd=PROJECT, check=True)  # fmt: skip
        result = json.loads(out.read_text())
    rows_out = []
    for page, sides in result["pages"].items():
        total = sides["admin"]["total_s"]
        extra = {"admin_s": {"median": total, "n": 1}}
        if sides["before"]:
            extra["before_s"] = {"median": sides["before"]["total_s"], "n": 1}
        rows_out.append(row(f"admin, {rows:,} records: {page} (ms)", {"median": total * 1000},
                            "< 100 ms", total < BUDGET_S, goal="admin", **extra))  # fmt: skip
    costs = result.get("index_costs")
    if costs:
        base = costs["claim"]["neither"]
        for name, claim in costs["claim"].items():
            if name != "neither":
                added = {what: claim[what] - base[what] for what in claim}
                rows_out.append(row(
                    f"admin indexes: a claim with the {name} index(es): added µs autocommit / "
                    "in a transaction, WAL bytes", {"median": added["autocommit_s"] * 1e6},
                    "reported", True, in_transaction_us=added["in_transaction_s"] * 1e6,
                    wal_bytes=added["wal_bytes"]))  # fmt: skip
        hot = costs["completions_hot"]
        rows_out.append(row("admin indexes: completions that were HOT updates",
                            {"median": hot["hot"]}, f"= {hot['updates']}",
                            hot["hot"] == hot["updates"]))  # fmt: skip
    return {"rows": rows_out, "details": result}
