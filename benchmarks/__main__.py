"""``python -m benchmarks [--quick] [--database postgresql|sqlite]``

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
from pathlib import Path
from typing import Any

SCENARIOS = ("new_key", "replay", "sql", "table_size", "concurrency", "purge")
TITLES = {
    "new_key": "1. new-key overhead",
    "replay": "2. replay",
    "sql": "3. SQL per request",
    "table_size": "4. table size",
    "concurrency": "5. concurrency",
    "purge": "6. purge",
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
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
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
    from benchmarks import db, purge, scenarios
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

    http = [s for s in selected if s in HTTP]
    if "concurrency" in http and sqlite:
        http.remove("concurrency")
        results["concurrency"]["skipped"] = "SQLite admits one writer at a time"
    if http:
        with gunicorn(args.workers, {}, scratch / "gunicorn.log") as port:
            calls = {"new_key": lambda: scenarios.new_key_overhead(port, sizes),
                     "replay": lambda: scenarios.replay(port, sizes),
                     "concurrency": lambda: scenarios.concurrency(port, sizes)}  # fmt: skip
            for name in http:
                record(name, calls[name])
    if "sql" in selected:
        record("sql", scenarios.sql_per_request)
    if "table_size" in selected:
        record("table_size", lambda: scenarios.table_size(sizes))
    if "purge" in selected:
        record("purge", lambda: purge.purge(sizes, args.purge_batch_size))


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
        "machine": {"database": args.database, "load_start": list(db.load_average())},
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
    suffix = "" if args.database == "postgresql" else f"-{args.database}"
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


if __name__ == "__main__":
    sys.exit(main())
