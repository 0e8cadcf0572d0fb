"""The minimal SQL sequence: the package's statements alone, from a bare psycopg 3 script.

Issue 10 asks to prove a target out of reach by showing the package within 5 %
of what the database itself needs for the same statements. ``capture`` runs
one request in process and records, from the wire (benchmarks.wire), every
message its connection sent, with the SQL and parameters Django gave the
driver; the key and the record id become placeholders. ``python -m
benchmarks.minimal`` (its own process, no Django) then sends exactly those
messages on one autocommit connection, a fresh key each time, and times each
request from its first message to its last result, as the HTTP client times a
request. The runner asks it for blocks over stdin, interleaved with the HTTP
blocks in the same ABBA rounds.
"""

from __future__ import annotations

import json
import pickle
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FreshKey:
    """A new key digest, as long as the captured one, for every request."""

    length: int


@dataclass(frozen=True)
class Result:
    """A value from the first row of an earlier step's result (the record id)."""

    step: int
    column: int


@dataclass(frozen=True)
class Step:
    sql: str
    params: list[Any] | None  # None: a literal message (a BEGIN psycopg sent by itself)


# --------------------------------------------------------------- capturing


def capture(path: str, key: str, authorization: str) -> list[Step]:
    """One request to ``path`` (in process) as the steps that replay it."""
    from django.test import Client

    from benchmarks import wire
    from benchmarks.harness import BODY

    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    with wire.capture() as captured:
        response = Client(HTTP_AUTHORIZATION=authorization).post(
            path, BODY, content_type="application/json", **headers
        )
    if response.status_code != 201:
        raise RuntimeError(f"capturing {path}: HTTP {response.status_code}")
    return steps(captured, _digest(key) if key else None)


def _digest(key: str) -> str:
    from idempotency import keys

    return keys.digest(key)


def steps(captured: Any, digest: str | None) -> list[Step]:
    """Align the wire's messages with Django's executions: a message Django did
    not execute (psycopg's own BEGIN) is sent as a literal."""
    executions = list(captured.executions)
    result: list[Step] = []
    rows: list[list[list[str | None]]] = []
    for message in captured.messages:
        literal = message.text.strip().upper() in ("BEGIN", "COMMIT", "ROLLBACK")
        if literal and (
            not executions or executions[0].sql.strip().upper() != message.text.upper()
        ):
            result.append(Step(message.text, None))
            rows.append([])
            continue
        if not executions:
            raise RuntimeError(f"a message on the wire that Django did not send: {message.text}")
        execution = executions.pop(0)
        result.append(Step(execution.sql, _placeholders(execution, digest, rows)))
        # Only the package's results hold the record id (the view's INSERT
        # returns its own id, which may be the same number).
        rows.append(execution.rows if "idempotency" in execution.sql else [])
    if executions:
        raise RuntimeError(f"{len(executions)} executions never reached the wire")
    return result


def _placeholders(
    execution: Any, digest: str | None, earlier: list[list[list[str | None]]]
) -> list[Any]:
    params: list[Any] = []
    package = "idempotency" in execution.sql
    for value in execution.params:
        if digest is not None and value == digest:
            params.append(FreshKey(len(digest)))
            continue
        found = None
        if package and isinstance(value, int) and not isinstance(value, bool) and value > 1:
            for step, rows in enumerate(earlier):
                if rows and str(value) in rows[0]:
                    found = Result(step, rows[0].index(str(value)))
                    break
        params.append(found or value)
    return params


# ----------------------------------------------------------------- the script


def _fill(params: list[Any] | None, results: list[Any]) -> list[Any] | None:
    if params is None:
        return None
    out = []
    for value in params:
        if isinstance(value, FreshKey):
            value = secrets.token_hex(value.length // 2 + 1)[: value.length]
        elif isinstance(value, Result):
            value = results[value.step][value.column]
        out.append(value)
    return out


def request(cursor: Any, sequence: list[Step]) -> float:
    """Send one request's messages; the seconds from the first to the last result."""
    results: list[Any] = []
    start = time.perf_counter()
    for step in sequence:
        cursor.execute(step.sql, _fill(step.params, results))
        while cursor.description is None and cursor.nextset():
            pass  # to the first result with rows ("BEGIN; SELECT ...")
        results.append(cursor.fetchone() if cursor.description else None)
    return time.perf_counter() - start


def serve(conninfo: str, sequences: dict[str, list[Step]]) -> None:
    """Answer ``{"side": ..., "n": ...}`` lines with the list of request times."""
    import psycopg

    with psycopg.connect(conninfo, autocommit=True, application_name="bench-minimal") as conn:
        cursor = psycopg.ClientCursor(conn)  # Django's binding: parameters in the text
        for line in sys.stdin:
            command = json.loads(line)
            sequence = sequences[command["side"]]
            times = [request(cursor, sequence) for _ in range(int(command["n"]))]
            print(json.dumps(times), flush=True)


class Script:
    """The script as a child process; ``block(side, n)`` returns n request times."""

    def __init__(self, conninfo: str, sequences: dict[str, list[Step]], scratch: Path) -> None:
        file = scratch / "minimal-sequences.pickle"
        file.write_bytes(pickle.dumps(sequences))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.minimal", conninfo, str(file)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip

    def block(self, side: str, n: int) -> list[float]:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps({"side": side, "n": n}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the minimal-sequence script exited ({self.process.wait()})")
        return [float(t) for t in json.loads(line)]

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def conninfo() -> str:
    """The benchmark database's, with the run's libpq options (--pg-options)."""
    from django.conf import settings
    from psycopg.conninfo import make_conninfo

    db = settings.DATABASES["default"]
    return make_conninfo(host=db["HOST"], port=db["PORT"], user=db["USER"],
                         password=db["PASSWORD"] or None, dbname=db["NAME"],
                         options=db["OPTIONS"].get("options") or None)  # fmt: skip


def describe(sequence: list[Step]) -> list[str]:
    """The steps as the report lists them."""
    return [step.sql[:100] + ("" if step.params is not None else " (literal)") for step in sequence]


if __name__ == "__main__":
    # Through the package's module, not __main__: the pickled placeholders are its classes.
    from benchmarks import minimal

    minimal.serve(sys.argv[1], pickle.loads(Path(sys.argv[2]).read_bytes()))
