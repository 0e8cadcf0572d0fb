"""The six measurements of the issue "Benchmarks", each against a baseline
measured in the same run, alternating sides in blocks (ABBA).

Every scenario returns a dict for the JSON report: ``rows`` (one per compared
quantity, with its ratio, target and verdict) and ``details``.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.test import Client as DjangoClient
from django.test import RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext

from benchmarks import db
from benchmarks.harness import (
    BODY,
    Client,
    Paired,
    alternate,
    closed_loop,
    expect,
)


@dataclass(frozen=True)
class Sizes:
    rounds: int  # ABBA rounds of the latency scenarios
    block: int  # requests per side per round
    warmup: int
    load_rounds: int
    load_seconds: float  # per side per round, 16 clients
    clients: int
    table_rows: int  # the "full" table of scenario 4
    table_rounds: int
    table_block: int
    purge_rows: int
    purge_rounds: int  # ABBA rounds of raw DELETE vs the command


QUICK = Sizes(rounds=4, block=100, warmup=30, load_rounds=2, load_seconds=2.0, clients=16,
              table_rows=100_000, table_rounds=4, table_block=200,
              purge_rows=100_000, purge_rounds=1)  # fmt: skip
FULL = Sizes(rounds=20, block=300, warmup=200, load_rounds=8, load_seconds=8.0, clients=16,
             table_rows=1_000_000, table_rounds=12, table_block=500,
             purge_rows=1_000_000, purge_rounds=2)  # fmt: skip

FLAVOURS = {"django": ("/bare/", "/idempotent/"), "drf": ("/drf/bare/", "/drf/idempotent/")}


def row(name: str, ratio: dict[str, float], target: str, met: bool, **extra: Any) -> dict[str, Any]:
    return {"name": name, "ratio": ratio, "target": target, "met": met, **extra}


def _latency_blocks(port: int, paths: dict[str, tuple[str, str | None]], sizes: Sizes) -> Paired:
    """One keep-alive connection; each side is (path, replay key or None for fresh keys)."""
    client = Client(port)
    paired = Paired()
    try:
        for path, key in paths.values():
            for _ in range(sizes.warmup):
                expect(client.post(path, fresh_key=key is None, key=key)[0], 201, path)

        def measure(side: str) -> None:
            path, key = paths[side]
            times = []
            for _ in range(sizes.block):
                status, seconds = client.post(path, fresh_key=key is None, key=key)
                expect(status, 201, path)
                times.append(seconds)
            paired.add(side, times)

        alternate(sizes.rounds, list(paths), measure)
    finally:
        client.close()
    return paired


def new_key_overhead(port: int, sizes: Sizes) -> dict[str, Any]:
    rows, details = [], {}
    for flavour, (bare, idem) in FLAVOURS.items():
        paired = _latency_blocks(port, {"bare": (bare, None), "package": (idem, None)}, sizes)
        ratio = paired.ratio("package", "bare")
        details[flavour] = {
            "bare_s": paired.summary("bare"),
            "package_s": paired.summary("package"),
            "added_s": paired.difference("package", "bare"),
        }
        rows.append(row(f"new key, {flavour} view: package / bare", ratio, "≤ 1.15",
                        ratio["median"] <= 1.15, **details[flavour]))  # fmt: skip
    return {"rows": rows, "details": details}


def replay(port: int, sizes: Sizes) -> dict[str, Any]:
    rows, details = [], {}
    for flavour, (bare, idem) in FLAVOURS.items():
        key = uuid.uuid4().hex
        client = Client(port)
        try:
            expect(client.post(idem, fresh_key=False, key=key)[0], 201, idem)
        finally:
            client.close()
        paired = _latency_blocks(port, {"bare": (bare, None), "replay": (idem, key)}, sizes)
        ratio = paired.ratio("replay", "bare")
        details[flavour] = {"bare_s": paired.summary("bare"), "replay_s": paired.summary("replay")}
        rows.append(row(f"replay, {flavour} view: replay / bare", ratio, "< 1.0",
                        ratio["median"] < 1.0, **details[flavour]))  # fmt: skip
    return {"rows": rows, "details": details}


def concurrency(port: int, sizes: Sizes) -> dict[str, Any]:
    paired = Paired()
    bare, idem = FLAVOURS["django"]

    def measure(side: str) -> None:
        done, elapsed = closed_loop(port, bare if side == "bare" else idem,
                                    sizes.clients, sizes.load_seconds)  # fmt: skip
        paired.add(side, [done / elapsed])

    alternate(sizes.load_rounds, ["bare", "package"], measure)
    ratio = paired.ratio("package", "bare")
    summary = {"bare_rps": paired.summary("bare"), "package_rps": paired.summary("package")}
    return {
        "rows": [
            row(
                f"throughput, {sizes.clients} clients, fresh keys: package / bare",
                ratio,
                "≥ 0.85",
                ratio["median"] >= 0.85,
                **summary,
            )
        ],  # fmt: skip
        "details": summary,
    }


# ------------------------------------------------------------- in process

TRANSACTION_CONTROL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)\b", re.I)


def _statements(client: DjangoClient, path: str, key: str | None) -> list[str]:
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    with CaptureQueriesContext(connections["default"]) as captured:
        response = client.post(path, BODY, content_type="application/json", **headers)
    expect(response.status_code, 201, path)
    return [q["sql"] for q in captured.captured_queries]


def sql_per_request() -> dict[str, Any]:
    """Statements Django sends, counted exactly with CaptureQueriesContext.

    Django logs BEGIN, COMMIT and savepoints among them; they are counted
    apart as transaction control, as the targets ask.
    """
    client = DjangoClient()
    rows, details = [], {}
    aim = 1 if db.vendor() == "postgresql" else 2
    for flavour, (bare, idem) in FLAVOURS.items():
        _statements(client, bare, None)  # warm caches (content types, ...)
        key = uuid.uuid4().hex
        sides = {
            "bare": _statements(client, bare, None),
            "new key": _statements(client, idem, key),
            "replay": _statements(client, idem, key),
        }

        def work(statements: list[str]) -> int:
            return sum(1 for s in statements if not TRANSACTION_CONTROL.match(s))

        added = work(sides["new key"]) - work(sides["bare"])
        replayed = work(sides["replay"])
        control = len(sides["new key"]) - work(sides["new key"])
        details[flavour] = {side: statements for side, statements in sides.items()}
        rows.append(row(f"SQL, {flavour} view, new key: statements added by the package "
                        f"(+ {control} transaction control)", {"median": added}, "≤ 2",
                        added <= 2, unit="statements"))  # fmt: skip
        rows.append(row(f"SQL, {flavour} view, replay: statements", {"median": replayed},
                        f"≤ 2 (aim {aim})", replayed <= 2, unit="statements",
                        aim_met=replayed <= aim))  # fmt: skip
    return {"rows": rows, "details": details}


def table_size(sizes: Sizes) -> dict[str, Any]:
    """Claim (+ complete) and replay through ``@idempotent`` called in process,
    with the record table empty (alias ``default``) or holding ``table_rows``
    records (alias ``full``): only the package touches the database."""
    from benchmarks.views import idempotent_noop_view

    db.fill("default", 0, expired=False)  # what the HTTP scenarios left behind
    fill_seconds = db.fill("full", sizes.table_rows, expired=False)
    factory = RequestFactory()
    replay_keys: dict[str, str] = {}

    def call(alias: str, key: str) -> float:
        request = factory.post("/noop/", BODY, content_type="application/json",
                               HTTP_IDEMPOTENCY_KEY=key)  # fmt: skip
        with override_settings(IDEMPOTENCY={"DATABASE": alias}):
            start = time.perf_counter()
            response = idempotent_noop_view(request)
            elapsed = time.perf_counter() - start
        expect(response.status_code, 201, f"noop on {alias}")
        return elapsed

    for alias in ("default", "full"):
        replay_keys[alias] = uuid.uuid4().hex
        for _ in range(sizes.warmup):
            call(alias, uuid.uuid4().hex)
            call(alias, replay_keys[alias])

    claims, replays = Paired(), Paired()

    def measure(alias: str) -> None:
        claims.add(alias, [call(alias, uuid.uuid4().hex) for _ in range(sizes.table_block)])
        replays.add(alias, [call(alias, replay_keys[alias]) for _ in range(sizes.table_block)])

    alternate(sizes.table_rounds, ["default", "full"], measure)
    rows_in_full = db.count("full")
    rows = []
    for what, paired in (("claim + complete (new key)", claims), ("replay", replays)):
        ratio = paired.ratio("full", "default")
        rows.append(row(f"{what}: {sizes.table_rows:,} records / empty table", ratio, "≤ 1.2",
                        ratio["median"] <= 1.2, empty_s=paired.summary("default"),
                        full_s=paired.summary("full")))  # fmt: skip
    return {"rows": rows, "details": {"fill_seconds": fill_seconds, "rows_in_full": rows_in_full}}
