"""What the reliability tests inject faults with, and how they count.

* ``Markers``: the executions of ``tests.testapp.views.fault_view``, counted in
  files that survive rollbacks and killed workers.
* ``TcpProxy``: a small threaded TCP proxy in front of the real database
  server, which a test cuts (listening socket and every live connection
  closed) and restores on the same port, so that a database outage is
  simulated without touching the database server other tests use.
* ``LONG``: ``IDEMPOTENCY_RELIABILITY_LONG=1`` runs the issue's full numbers;
  by default each test runs a short CI mode.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from idempotency.keys import digest
from idempotency.models import IdempotencyRecord
from tests.servers import free_port
from tests.testapp.models import Charge

LONG = os.environ.get("IDEMPOTENCY_RELIABILITY_LONG", "") not in ("", "0")
# The reliability servers take over an abandoned lock after this many seconds.
LOCK_TIMEOUT = 2
PROBLEM_JSON = "application/problem+json"

# One line per test, printed at the end of the run (conftest.py), so the
# numbers behind a green run are visible.
TALLIES: list[str] = []


def mode(ci: int, long: int) -> int:
    """``long`` with IDEMPOTENCY_RELIABILITY_LONG=1, else ``ci``."""
    return long if LONG else ci


@dataclass(frozen=True)
class Markers:
    """The directory ``fault_view`` counts its executions in (one line with
    the worker's pid per execution, appended before the view's first write)."""

    directory: Path

    def runs(self, key: str) -> list[int]:
        return self._pids(f"{key}.runs")

    def returned(self, key: str) -> list[int]:
        """The executions that got as far as returning their response."""
        return self._pids(f"{key}.returned")

    def _pids(self, name: str) -> list[int]:
        path = self.directory / name
        return [int(line) for line in path.read_text().split()] if path.exists() else []

    def pid(self, key: str) -> int | None:
        path = self.directory / f"{key}.pid"
        text = path.read_text() if path.exists() else ""
        return int(text) if text else None


def committed(key: str) -> list[int]:
    """The primary keys of the committed Charges ``fault_view`` wrote for ``key``."""
    return list(Charge.objects.filter(label=key).order_by("pk").values_list("pk", flat=True))


def record_of(key: str) -> IdempotencyRecord | None:
    return IdempotencyRecord.objects.filter(key=digest(key)).first()


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream``, byte for byte."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.accepted = 0
        self.cut_connections = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.settimeout(0.1)  # so that the accept loop sees cut() promptly
        with self._lock:
            self._listener = listener
        self._spawn(self._accept, listener)

    def cut(self) -> int:
        """Refuse new connections and drop live ones; returns how many."""
        with self._lock:
            listener, self._listener = self._listener, None
            live, self._sockets = self._sockets, set()
        if listener is not None:
            listener.close()
        for sock in live:
            _drop(sock)
        self.cut_connections += len(live) // 2
        return len(live) // 2

    def restore(self) -> None:
        self.start()

    def stop(self) -> None:
        self._stopping.set()
        self.cut()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=5)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            with self._lock:
                if self._listener is not listener:
                    return  # cut
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by cut()
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut while connecting
                    _drop(client)
                    _drop(upstream)
                    continue
                self._sockets |= {client, upstream}
                self.accepted += 1
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets -= {source, target}
            _drop(source)
            _drop(target)


def _drop(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
