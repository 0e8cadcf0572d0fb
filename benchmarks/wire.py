"""What a request sends to PostgreSQL, read on the wire.

Django's ``CaptureQueriesContext`` records what Django *thinks* it sends: it
logs ``BEGIN`` when an atomic block turns autocommit off (psycopg sends it
later, or never, when the package has sent its own) and one entry for a
message that carries three statements (``claim; COMMIT; BEGIN``). libpq's
trace of the connection records the protocol itself: every message the client
sends (a round trip ends at each ``ReadyForQuery``) and every statement the
server completes (``CommandComplete``), ``BEGIN`` and ``COMMIT`` included.

``capture`` also records, for each execution, the SQL and parameters Django
handed to the driver and the first result's values, so that
``benchmarks.minimal`` can replay exactly the same statements from a bare
psycopg script.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


@dataclass
class Message:
    """One message from the client and the statements the server completed for it."""

    text: str
    commands: list[str] = field(default_factory=list)

    def work(self) -> list[str]:
        return [c for c in self.commands if not c.startswith(TRANSACTION_CONTROL)]

    def control(self) -> list[str]:
        return [c for c in self.commands if c.startswith(TRANSACTION_CONTROL)]


def parse(trace: str) -> list[Message]:
    """The messages of a libpq trace (``PQtrace`` with regress mode, no timestamps).

    A simple ``Query`` is one message; an extended-protocol exchange
    (``Parse``/``Bind``/``Execute``) is one message ending at its ``Sync``.
    """
    messages: list[Message] = []
    pending: Message | None = None
    for line in trace.splitlines():
        parts = line.split("\t", 3)
        if len(parts) < 3:
            continue
        direction, kind = parts[0], parts[2]
        rest = parts[3].strip() if len(parts) > 3 else ""
        if direction == "F" and kind == "Query":
            messages.append(Message(_unquote(rest)))
        elif direction == "F" and kind == "Parse" and pending is None:
            pending = Message(_parse_text(rest))
            messages.append(pending)
        elif direction == "F" and kind == "Sync":
            pending = None
        elif direction == "B" and kind == "CommandComplete" and messages:
            messages[-1].commands.append(_unquote(rest))
    return messages


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _parse_text(rest: str) -> str:
    # Parse's arguments: "statement name" "query" ...
    quoted = rest.split('" "', 1)
    return quoted[1].rsplit('" ', 1)[0] if len(quoted) == 2 else rest


@dataclass
class Execution:
    """One ``cursor.execute`` as Django made it, with its timing and first result."""

    sql: str
    params: list[Any]
    seconds: float
    rows: list[list[str | None]]


@dataclass
class Capture:
    executions: list[Execution] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)


@contextlib.contextmanager
def capture(alias: str = "default") -> Iterator[Capture]:
    """Trace the wire and wrap every execution of ``alias``'s connection (PostgreSQL)."""
    from django.db import connections
    from psycopg import pq

    connection = connections[alias]
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    result = Capture()

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        start = time.perf_counter()
        value = execute(sql, params, many, context)
        seconds = time.perf_counter() - start
        result.executions.append(Execution(sql, list(params or ()), seconds,
                                           _first_result(context["cursor"])))  # fmt: skip
        return value

    with tempfile.TemporaryFile() as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            with connection.execute_wrapper(wrapper):
                yield result
        finally:
            pgconn.untrace()
        trace.seek(0)
        result.messages = parse(trace.read().decode("utf-8", "replace"))


def _first_result(cursor: Any) -> list[list[str | None]]:
    """The values of the execution's first result that has rows (``BEGIN;
    SELECT ...`` has two results), as text, read from libpq's results without
    moving the cursor (the caller fetches them afterwards)."""
    raw_cursor = getattr(cursor, "cursor", cursor)
    results = getattr(raw_cursor, "_results", None) or [getattr(raw_cursor, "pgresult", None)]
    raw = next((r for r in results if r is not None and r.nfields), None)
    if raw is None:
        return []
    return [
        [None if (v := raw.get_value(r, c)) is None else bytes(v).decode("utf-8", "replace")
         for c in range(raw.nfields)]
        for r in range(min(raw.ntuples, 5))
    ]  # fmt: skip


def counts(messages: list[Message], package_marker: str = "idempotency") -> dict[str, int]:
    """Round trips, statements (apart from transaction control), transaction
    control, and the package's statements (messages naming its table or functions)."""
    return {
        "round_trips": len(messages),
        "statements": sum(len(m.work()) for m in messages),
        "transaction_control": sum(len(m.control()) for m in messages),
        "package_statements": sum(len(m.work()) for m in messages if package_marker in m.text),
    }
