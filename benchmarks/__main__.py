"""``python -m benchmarks [--quick] [--database postgresql|mariadb|sqlite]``

Runs every scenario, writes benchmarks/results/{quick,full}-*.md and .json, and
exits 1 if the benchmark itself crashed (0 otherwise: the numbers inform, they
do not gate, unless --strict is given, which exits 2 when a target is missed).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

SCENARIOS = (
    "new_key",
    "replay",
    "sql",
    "profile",
    "table_size",
    "concurrency",
    "purge",
    "admin",
    "fingerprint",
)
TITLES = {
    "new_key": "1. new-key overhead",
    "replay": "2. replay",
    "sql": "3. SQL per request",
    "table_size": "4. table size",
    "concurrency": "5. concurrency",
    "purge": "6. purge",
    "admin": "7. admin pages",
    "fingerprint": "8. fingerprint",
    "profile": "9. profile of the new-key path",
}
HTTP = {"new_key", "replay", "concurrency"}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run in under two minutes (CI); small sizes, few rounds",
    )
    parser.add_argument("--database", choices=["postgresql", "mariadb", "sqlite"],
                        default="postgresql")  # fmt: skip
    parser.add_argument(
        "--db-name",
        default="idempotency_bench",
        help="scratch database to create and drop (must contain 'bench'); "
        "a second one gets the suffix _full",
    )
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, help="run only these scenarios")
    parser.add_argument(
        "--pg-options",
        default="",
        help='libpq options for every connection, e.g. "-c synchronous_commit=off"',
    )
    parser.add_argument(
        "--rows",
        type=int,
        default=None,
        help="records in the table-size and purge scenarios "
        "(default 100,000 with --quick, else 1,000,000)",
    )
    parser.add_argument(
        "--purge-batch-size",
        type=int,
        default=None,
        help="pass --batch-size to the purge command (default: its own)",
    )
    parser.add_argument(
        "--store",
        choices=["database", "redis"],
        default="database",
        help="where the records live (STORE); the HTTP scenarios are the ones that differ",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/0",
        help="REDIS_URL with --store redis; the run's keys are deleted after",
    )
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument(
        "--output-dir", type=Path, default=Path(__file__).resolve().parent / "results"
    )
    parser.add_argument("--keep-databases", action="store_true")
    parser.add_argument("--strict", action="store_true", help="exit 2 if a target is missed")
    return parser.parse_args(argv)  # fmt: skip


def machine(database: str, workers: int) -> dict[str, Any]:
    import django
    import gunicorn

    from benchmarks import db

    project = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=project,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "idempotency"],
            cwd=project,
            capture_output=True,
            text=True,
        ).stdout.strip()
        commit += " (idempotency/ has uncommitted changes)" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"  # fmt: skip
    return {
        "cpus": os.cpu_count(),
        "memory_mb": db.machine_memory_mb(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "gunicorn": gunicorn.__version__,
        "database": db.server_version(),
        "workers": workers,
        "pg_options": os.environ.get("BENCH_PG_OPTIONS", ""),
        "purge_batch_size": os.environ.get("BENCH_PURGE_BATCH_SIZE", "the command's default"),
        "platform": platform.platform(),
        "load_start": list(db.load_average()),
        "commit": commit,
    }


def run(args: argparse.Namespace, report: dict[str, Any], scratch: Path) -> None:
    from benchmarks import cpu, db, purge, scenarios
    from benchmarks.harness import gunicorn

    sizes = scenarios.QUICK if args.quick else scenarios.FULL
    if args.rows:
        sizes = dataclasses.replace(sizes, table_rows=args.rows, purge_rows=args.rows)
    report["sizes"] = sizes.__dict__
    selected = [s for s in SCENARIOS if not args.only or s in args.only]
    db.create()
    report["machine"] = machine(args.database, args.workers)
    report["machine"]["probe"] = db.probe()
    results = report["scenarios"]
    for name in selected:
        results[name] = {"title": TITLES[name]}
    sqlite = args.database == "sqlite"

    def record(name: str, call: Any) -> None:
        print(f"[benchmarks] {TITLES[name]} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        results[name].update(call())
        results[name]["seconds"] = time.perf_counter() - start
        left_open = db.open_transactions()
        if left_open:
            raise RuntimeError(f"{TITLES[name]} left transactions open: {left_open[:5]}")

    http = [s for s in selected if s in HTTP]
    if "concurrency" in http and sqlite:
        http.remove("concurrency")
        results["concurrency"]["skipped"] = "SQLite admits one writer at a time"
    if http:
        env = {"BENCH_APPLICATION_NAME": cpu.HTTP_APPLICATION_NAME}
        with gunicorn(args.workers, env, scratch / "gunicorn.log") as server:
            calls = {"new_key": lambda: scenarios.new_key_overhead(server, sizes, scratch),
                     "replay": lambda: scenarios.replay(server.port, sizes),
                     "concurrency": lambda: scenarios.concurrency(server, sizes)}  # fmt: skip
            for name in http:
                record(name, calls[name])
    if args.database == "mariadb":
        for name in ("table_size", "purge"):
            if name in selected:
                selected.remove(name)
                results[name]["skipped"] = "its table fill is written for PostgreSQL and SQLite"
    if "sql" in selected:
        from benchmarks import sql

        record("sql", sql.sql_per_request)
    if "profile" in selected:
        from benchmarks import profile

        n = min(sizes.rounds * sizes.block // 2, 1000)
        record("profile", lambda: profile.profile(n))
    if "table_size" in selected:
        record("table_size", lambda: scenarios.table_size(sizes))
    if "purge" in selected:
        record("purge", lambda: purge.purge(sizes, args.purge_batch_size))
    if "admin" in selected:
        from benchmarks import admin

        record("admin", lambda: admin.scenario(args.database, sizes.table_rows))
    if "fingerprint" in selected:
        from benchmarks import fingerprint

        record("fingerprint", lambda: fingerprint.fingerprint(sizes.rounds))


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    scratch = Path(tempfile.mkdtemp(prefix="idempotency-bench-"))
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
        "BENCH_DATABASE": args.database,
        "BENCH_DB_NAME": args.db_name,
        "BENCH_SQLITE_DIR": str(scratch),
        "BENCH_PG_OPTIONS": args.pg_options,
        **({"BENCH_PURGE_BATCH_SIZE": str(args.purge_batch_size)} if args.purge_batch_size else {}),
        "PYTHONUNBUFFERED": "1",
        "BENCH_STORE": args.store,
        "BENCH_REDIS_URL": args.redis_url,
        "BENCH_REDIS_PREFIX": f"idempotency-bench-{uuid.uuid4().hex}:",
    })  # fmt: skip
    from benchmarks.db import check_scratch_name

    check_scratch_name(args.db_name)
    import django

    django.setup()
    from benchmarks import db
    from benchmarks import report as reports

    mode = "quick" if args.quick else "full"
    today = datetime.date.today().isoformat()
    report: dict[str, Any] = {
        "mode": mode, "date": today, "scenarios": {},
        "command": "python -m benchmarks" + "".join(f" {a}" for a in sys.argv[1:]),
        "machine": {"database": args.database, "store": args.store,
                    "load_start": list(db.load_average())},
    }  # fmt: skip
    start = time.perf_counter()
    crashed = False
    try:
        run(args, report, scratch)
    except BaseException as error:
        crashed = True
        report["error"] = traceback.format_exc()
        for scenario in report["scenarios"].values():
            if "rows" not in scenario and "skipped" not in scenario:
                scenario["error"] = f"{type(error).__name__}: {error}"[:200]
        traceback.print_exc()
    finally:
        report["seconds"] = time.perf_counter() - start
        report["machine"]["load_end"] = list(db.load_average())
        report["machine"].setdefault("cpus", os.cpu_count())
        if not args.keep_databases:
            try:
                db.drop()
            except Exception:
                traceback.print_exc()
                crashed = True
        shutil.rmtree(scratch, ignore_errors=True)
        if args.store == "redis":
            _delete_redis_keys(args.redis_url, os.environ["BENCH_REDIS_PREFIX"])
    suffix = "" if args.database == "postgresql" else f"-{args.database}"
    suffix += "-redis" if args.store == "redis" else ""
    suffix += "-pg-options" if args.pg_options else ""
    suffix += f"-batch-{args.purge_batch_size}" if args.purge_batch_size else ""
    stem = f"quick{suffix}" if args.quick else f"full-{today}{suffix}"
    try:
        md, js = reports.write(report, args.output_dir, stem)
        print(f"[benchmarks] wrote {md} and {js}", file=sys.stderr)
        sys.stdout.write(md.read_text())
    except Exception:
        traceback.print_exc()
        crashed = True
    if crashed:
        return 1
    missed = [r for s in report["scenarios"].values() for r in s.get("rows", ()) if not r["met"]]
    return 2 if args.strict and missed else 0


def _delete_redis_keys(url: str, prefix: str) -> None:
    """The run's own records, and only them (the Redis may be shared)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        for name in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(name)
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
