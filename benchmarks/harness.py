"""Scratch databases, a gunicorn server started and stopped by PID, a
keep-alive HTTP client, and the statistics every scenario reports."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
BODY = {"amount": 1250, "currency": "EUR", "description": "benchmark order"}
# The DRF token of the user every run creates in its scratch database
# (db.create); every request carries it, whichever flavour it goes to, so
# that the sides differ only by what the endpoint does with it.
TOKEN = "b3nch" * 8
AUTHORIZATION = f"Token {TOKEN}"


# ---------------------------------------------------------------- statistics


def quantiles(values: list[float]) -> dict[str, float]:
    """Median and quartiles (inclusive method), plus the count."""
    if not values:
        return {"n": 0, "median": float("nan"), "p25": float("nan"), "p75": float("nan")}
    if len(values) == 1:
        return {"n": 1, "median": values[0], "p25": values[0], "p75": values[0]}
    p25, p50, p75 = statistics.quantiles(values, n=4, method="inclusive")
    return {"n": len(values), "median": p50, "p25": p25, "p75": p75}


@dataclass
class Paired:
    """Two sides measured in alternating blocks: one value list per block."""

    blocks: dict[str, list[list[float]]] = field(default_factory=dict)

    def add(self, side: str, values: list[float]) -> None:
        self.blocks.setdefault(side, []).append(values)

    def summary(self, side: str) -> dict[str, float]:
        return quantiles([v for block in self.blocks[side] for v in block])

    def ratio(self, side: str, base: str) -> dict[str, float]:
        """Median block of ``side`` over the median of its neighbouring ``base`` block,
        per round; quoted as the median of those ratios with their quartiles."""
        ratios = [
            statistics.median(a) / statistics.median(b)
            for a, b in zip(self.blocks[side], self.blocks[base], strict=True)
        ]
        return quantiles(ratios)

    def difference(self, side: str, base: str) -> float:
        """The median over rounds of (median of ``side`` - median of ``base``):
        what ``side`` adds in absolute terms, whatever the view itself costs."""
        return statistics.median(
            statistics.median(a) - statistics.median(b)
            for a, b in zip(self.blocks[side], self.blocks[base], strict=True)
        )


# ------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_pids(parent: int) -> set[int]:
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != "Z":
            children.add(int(stat.parent.name))
    return children


def _no_control_socket() -> list[str]:
    # Recent gunicorn opens a control socket at a fixed path in $HOME, which
    # two servers (ours and a test suite's) would fight over.
    from gunicorn.config import KNOWN_SETTINGS

    return [f for s in KNOWN_SETTINGS for f in s.cli or () if f == "--no-control-socket"]


@dataclass(frozen=True)
class Server:
    port: int
    pid: int  # the gunicorn master's

    def workers(self) -> set[int]:
        return child_pids(self.pid)


@contextlib.contextmanager
def gunicorn(workers: int, env: dict[str, str], log: Path) -> Iterator[Server]:
    """Serve ``benchmarks.wsgi`` on a free 127.0.0.1 port; yield the server.

    ``gthread`` with one thread per worker: each process serves one request
    at a time, as a ``sync`` worker does, but keeps connections alive (the
    ``sync`` worker closes every connection after one response).
    """
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "benchmarks.wsgi:application",
             "-w", str(workers), "-k", "gthread", "--threads", "1", "--keep-alive", "30",
             "-b", f"127.0.0.1:{port}", "--timeout", "60", "--graceful-timeout", "5",
             "--log-level", "warning", *_no_control_socket()],
            cwd=PROJECT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    workers_seen: set[int] = set()
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{log.read_text()[-3000:]}")
            workers_seen |= child_pids(process.pid)
            if len(workers_seen) >= workers and _answers(port):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield Server(port, process.pid)
        workers_seen |= child_pids(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        for pid in workers_seen:  # orphans, if the master had to be killed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _answers(port: int) -> bool:
    try:
        client = Client(port)
        try:
            return client.post("/bare/", fresh_key=False)[0] == 201
        finally:
            client.close()
    except OSError:
        return False


class Client:
    """One keep-alive connection; ``post`` returns (status, seconds)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.body = json.dumps(BODY).encode()

    def post(self, path: str, fresh_key: bool = True, key: str | None = None) -> tuple[int, float]:
        headers = {"Content-Type": "application/json", "Authorization": AUTHORIZATION}
        if fresh_key:
            key = uuid.uuid4().hex
        if key is not None:
            headers["Idempotency-Key"] = key
        start = time.perf_counter()
        self.conn.request("POST", path, self.body, headers)
        response = self.conn.getresponse()
        response.read()
        elapsed = time.perf_counter() - start
        if response.getheader("Connection", "").lower() == "close":
            self.conn.close()
        return response.status, elapsed

    def close(self) -> None:
        self.conn.close()


def expect(status: int, wanted: int, what: str) -> None:
    if status != wanted:
        raise RuntimeError(f"{what}: HTTP {status}, expected {wanted}")


def closed_loop(port: int, path: str, clients: int, seconds: float,
                meter: Any = None, side: str = "") -> tuple[int, float]:  # fmt: skip
    """``clients`` threads, each on its own connection, send fresh-key POSTs
    back to back for ``seconds``; returns (completed requests, elapsed).
    ``meter`` (a cpu.CpuMeter) reads the CPU around the window as ``side``."""
    counts = [0] * clients
    errors: list[str] = []
    stop = threading.Event()
    barrier = threading.Barrier(clients + 1)

    def work(i: int) -> None:
        client = Client(port)
        try:
            client.post(path)  # connect and warm up outside the window
            barrier.wait()
            while not stop.is_set():
                status, _ = client.post(path)
                if status != 201:
                    errors.append(f"{path}: HTTP {status}")
                    return
                counts[i] += 1
        except Exception as error:  # reported below, never swallowed
            errors.append(f"{path}: {error!r}")
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.abort()
        finally:
            client.close()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=60)
    before = meter.reading() if meter else None
    start = time.perf_counter()
    done_before = sum(counts)
    time.sleep(seconds)
    stop.set()
    elapsed = time.perf_counter() - start
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise RuntimeError(f"closed loop failed: {errors[:3]}")
    if meter and before:
        # After the join: the requests in flight at the stop are in both the
        # count and the CPU reading.
        meter.add(side, before, sum(counts) - done_before)
    return sum(counts), elapsed


def alternate(rounds: int, sides: list[str], measure: Callable[[str], Any]) -> None:
    """Run ``measure(side)`` for every side, ``rounds`` times, in ABBA order so
    that a drift in machine load falls on both sides alike."""
    for r in range(rounds):
        for side in sides if r % 2 == 0 else list(reversed(sides)):
            measure(side)
