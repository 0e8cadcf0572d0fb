"""CPU per request, on each side of the database connection.

The kernel's own accounting, read from ``/proc/<pid>/stat`` (``utime`` and
``stime``, in clock ticks) of the processes that serve the requests: the
gunicorn workers (the application side) and the PostgreSQL backends that
serve those workers' connections (the database side), found by their
``application_name`` in ``pg_stat_activity``. The client's own CPU is not
counted. A tick is 10 ms on Linux, so a meter reads blocks of many requests
and divides.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
# Our gunicorn workers' connections carry this name (settings.py reads it).
HTTP_APPLICATION_NAME = "bench-http"


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` in seconds; ``None`` when it is gone or unreadable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after it.
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def total(pids: Iterable[int]) -> dict[int, float]:
    """CPU seconds of each readable pid."""
    seconds = {pid: cpu_seconds(pid) for pid in pids}
    return {pid: s for pid, s in seconds.items() if s is not None}


def pg_backends(application_name: str = HTTP_APPLICATION_NAME) -> set[int]:
    """PIDs of the backends serving connections named ``application_name`` in
    our scratch database (the server runs on this machine: 127.0.0.1)."""
    from django.db import connections

    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                       "AND datname = current_database()", [application_name])  # fmt: skip
        return {int(row[0]) for row in cursor.fetchall()}


@dataclass
class Usage:
    """CPU seconds and requests accumulated over the blocks of one side."""

    app_s: float = 0.0
    db_s: float = 0.0
    requests: int = 0

    def per_request(self, db_measured: bool = True) -> dict[str, float | None]:
        n = max(self.requests, 1)
        db_s = self.db_s / n if db_measured else None
        return {"app_s": self.app_s / n, "db_s": db_s, "requests": self.requests}


@dataclass
class CpuMeter:
    """Brackets blocks of requests with readings of both sides' processes.

    ``app_pids`` and ``db_pids`` are asked again at each reading (a worker
    may be replaced, a backend opened late); a process counts only with both
    readings, so one that appears or vanishes mid-block is left out rather
    than counted from zero.
    """

    app_pids: Callable[[], set[int]]
    # None: the database side is not measured (SQLite works inside the
    # application; MariaDB serves every connection from one process).
    db_pids: Callable[[], set[int]] | None = None
    sides: dict[str, Usage] = field(default_factory=dict)

    def reading(self) -> tuple[dict[int, float], dict[int, float]]:
        return total(self.app_pids()), total(self.db_pids() if self.db_pids else ())

    def add(self, side: str, before: tuple[dict[int, float], dict[int, float]],
            requests: int) -> None:  # fmt: skip
        after = self.reading()
        usage = self.sides.setdefault(side, Usage())
        usage.app_s += _delta(before[0], after[0])
        usage.db_s += _delta(before[1], after[1])
        usage.requests += requests

    def summary(self, base: str = "bare") -> dict[str, dict[str, float | None]]:
        """Per side CPU per request, and what every other side adds over ``base``."""
        measured = self.db_pids is not None
        result = {side: usage.per_request(measured) for side, usage in self.sides.items()}
        if base in self.sides:
            for side in list(result):
                if side != base:
                    added = self.sides[side].per_request(), self.sides[base].per_request()
                    result[f"{side} added"] = {
                        "app_s": added[0]["app_s"] - added[1]["app_s"],  # type: ignore[operator]
                        "db_s": added[0]["db_s"] - added[1]["db_s"] if measured else None,  # type: ignore[operator]
                    }
        return result


def _delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(after[pid] - before[pid] for pid in before.keys() & after.keys())
