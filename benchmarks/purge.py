"""Scenario 6: ``purge_idempotency_keys`` against one raw DELETE, on the same
number of expired records, alternating (ABBA), a fresh fill before each side."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings

from benchmarks import db
from benchmarks.harness import PROJECT, Paired, alternate
from benchmarks.scenarios import Sizes, row

APPLICATION_NAME = "bench_purge"
MEMORY_LIMIT_MB = 150
TRANSACTION_LIMIT_S = 1.0


class TransactionWatch:
    """Samples pg_stat_activity every 10 ms for the purge's open transaction.

    A real, independent measurement of how long the command keeps a
    transaction open: each transaction's age is seen at its last sample, so
    the maximum is a lower bound (within one sampling interval).
    """

    def __init__(self) -> None:
        self.ages: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.error: Exception | None = None

    def run(self) -> None:
        import psycopg

        d = settings.DATABASES["full"]
        try:
            with psycopg.connect(host=d["HOST"], port=d["PORT"], user=d["USER"],
                                 password=d["PASSWORD"] or None, dbname=d["NAME"],
                                 autocommit=True) as conn:  # fmt: skip
                while not self.stop.is_set():
                    for xact_start, age in conn.execute(
                        "SELECT xact_start::text, EXTRACT(EPOCH FROM clock_timestamp() - "
                        "xact_start)::float FROM pg_stat_activity WHERE application_name = %s "
                        "AND xact_start IS NOT NULL",
                        [APPLICATION_NAME],
                    ):
                        self.ages[xact_start] = max(age, self.ages.get(xact_start, 0.0))
                    time.sleep(0.01)
        except Exception as error:  # reported by the scenario
            self.error = error


def run_command(batch_size: int | None) -> dict[str, Any]:
    """The command in a child process; its wall time, peak RSS and batch gaps."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "purge.json"
        env = {**os.environ, "BENCH_IDEMPOTENCY_DATABASE": "full",
               "BENCH_APPLICATION_NAME": APPLICATION_NAME}  # fmt: skip
        watch = TransactionWatch() if db.vendor("full") == "postgresql" else None
        if watch:
            watch.thread.start()
        with (Path(tmp) / "stderr").open("w+") as err:
            process = subprocess.Popen([sys.executable, "-m", "benchmarks.purge_child", str(out),
                                        *([f"--batch-size={batch_size}"] if batch_size else [])],
                                       cwd=PROJECT, env=env, stderr=err)  # fmt: skip
            # wait4 reports this child's own peak RSS (ru_maxrss, KiB on Linux).
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            err.seek(0)
            if process.returncode != 0:
                raise RuntimeError(f"purge command failed:\n{err.read()[-3000:]}")
        if watch:
            watch.stop.set()
            watch.thread.join(timeout=5)
        result = json.loads(out.read_text())
    stamps = [result["start"]] + [t for t, text in result["writes"] if "deleted" in text.lower()]
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return {
        "seconds": result["end"] - result["start"],
        "max_rss_mb": usage.ru_maxrss / 1024,
        "progress_lines": len(result["writes"]),
        "batch_gap_s": max(gaps) if gaps else float("nan"),
        "batch_gaps": len(gaps),
        "watched_transactions": len(watch.ages) if watch else None,
        "watched_max_transaction_s": max(watch.ages.values(), default=0.0) if watch else None,
        "watch_error": repr(watch.error) if watch and watch.error else None,
    }


def purge(sizes: Sizes, batch_size: int | None = None) -> dict[str, Any]:
    paired = Paired()
    runs: list[dict[str, Any]] = []
    fills: list[float] = []

    def measure(side: str) -> None:
        fills.append(db.fill("full", sizes.purge_rows, expired=True))
        if side == "raw DELETE":
            seconds, deleted = db.raw_delete_expired("full")
        else:
            run = run_command(batch_size)
            runs.append(run)
            seconds = run["seconds"]
        left = db.count("full")
        if left:
            raise RuntimeError(f"{side} left {left} expired records")
        paired.add(side, [seconds])

    alternate(sizes.purge_rounds, ["raw DELETE", "command"], measure)
    ratio = paired.ratio("command", "raw DELETE")
    peak = max(r["max_rss_mb"] for r in runs)
    # Upper bound: the gap between two progress lines spans one batch's
    # transaction (and its SELECT); lower bound: pg_stat_activity samples.
    upper = max(r["batch_gap_s"] for r in runs) if gaps_ok(runs) else None
    watched = [r["watched_max_transaction_s"] for r in runs
               if r["watched_max_transaction_s"] is not None]  # fmt: skip
    lower = max(watched) if watched else None
    longest = upper if upper is not None else lower
    rows = [
        row(f"purge {sizes.purge_rows:,} expired: command "
            f"(--batch-size {batch_size or 'default'}) / raw DELETE", ratio, "≤ 1.5",
            ratio["median"] <= 1.5, goal="purge", raw_s=paired.summary("raw DELETE"),
            command_s=paired.summary("command")),
        row("purge: command peak RSS (MB)", {"median": peak}, f"< {MEMORY_LIMIT_MB}",
            peak < MEMORY_LIMIT_MB, unit="MB", goal="purge"),
        row("purge: longest transaction (s)", {"median": longest}, f"≤ {TRANSACTION_LIMIT_S}",
            longest is not None and longest <= TRANSACTION_LIMIT_S, unit="s", goal="purge",
            progress_gap_upper_bound_s=upper, pg_stat_activity_lower_bound_s=lower),
    ]  # fmt: skip
    return {"rows": rows, "details": {"command_runs": runs, "fill_seconds": fills}}


def gaps_ok(runs: list[dict[str, Any]]) -> bool:
    """Batch gaps bound a transaction from above only if every batch reported."""
    return all(r["batch_gaps"] > 1 for r in runs)
