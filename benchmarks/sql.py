"""Scenario 3, SQL per request: statements and round trips, exact.

On PostgreSQL read on the wire (libpq's trace, benchmarks.wire); on MariaDB
and SQLite as Django logs them (``CaptureQueriesContext``), transaction
control counted apart.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.db import connections
from django.test import Client as DjangoClient
from django.test.utils import CaptureQueriesContext

from benchmarks import db, wire
from benchmarks.harness import AUTHORIZATION, BODY, expect
from benchmarks.scenarios import FLAVOURS, row

TRANSACTION_CONTROL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)\b", re.I)


def _statements(client: DjangoClient, path: str, key: str | None) -> list[str]:
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    with CaptureQueriesContext(connections["default"]) as captured:
        response = client.post(path, BODY, content_type="application/json", **headers)
    expect(response.status_code, 201, path)
    return [q["sql"] for q in captured.captured_queries]


def sql_per_request() -> dict[str, Any]:
    """Statements per request, exact: on PostgreSQL read on the wire (libpq's
    trace, benchmarks.wire), elsewhere as Django logs them."""
    if db.vendor() == "postgresql":
        return _sql_on_the_wire()
    return _sql_as_django_logs_it()


def _post(client: DjangoClient, path: str, key: str | None) -> None:
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    response = client.post(path, BODY, content_type="application/json", **headers)
    expect(response.status_code, 201, path)


def _sql_on_the_wire() -> dict[str, Any]:
    client = DjangoClient(HTTP_AUTHORIZATION=AUTHORIZATION)
    rows, details = [], {}
    for flavour, (bare, idem) in FLAVOURS.items():
        _post(client, bare, None)  # warm caches (content types, plans, ...)
        _post(client, idem, uuid.uuid4().hex)
        key = uuid.uuid4().hex
        sides: dict[str, list[wire.Message]] = {}
        for side, path, side_key in (("bare", bare, None), ("new key", idem, key),
                                     ("replay", idem, key)):  # fmt: skip
            with wire.capture() as captured:
                _post(client, path, side_key)
            sides[side] = captured.messages
        n = {side: wire.counts(messages) for side, messages in sides.items()}
        added = n["new key"]["statements"] - n["bare"]["statements"]
        trips = n["new key"]["round_trips"] - n["bare"]["round_trips"]
        control = n["new key"]["transaction_control"] - n["bare"]["transaction_control"]
        replayed = n["replay"]["package_statements"]
        # The bare view's own work is one round trip (its INSERT); what it
        # spends before (the token lookup) the replay spends too.
        replay_trips = n["replay"]["round_trips"] - (n["bare"]["round_trips"] - 1)
        goal = f"SQL, {flavour} view"
        rows += [
            row(f"SQL, {flavour} view, new key: statements added by the package", {"median": added},
                "≤ 2", added <= 2, unit="statements", goal=f"{goal}, new key"),
            row(f"SQL, {flavour} view, new key: round trips added", {"median": trips}, "≤ 2",
                trips <= 2, unit="round trips", goal=f"{goal}, new key"),
            # The view runs in no transaction of its own: BEGIN and COMMIT may be added.
            row(f"SQL, {flavour} view, new key: transaction control added "
                f"({', '.join(c for m in sides['new key'] for c in m.control())})",
                {"median": control}, "≤ 2 (BEGIN, COMMIT)", control <= 2,
                unit="statements", goal=f"{goal}, new key"),
            row(f"SQL, {flavour} view, replay: the package's statements "
                f"(+ {n['replay']['transaction_control']} transaction control, "
                f"{n['replay']['round_trips']} round trips in all)", {"median": replayed},
                "1", replayed <= 1, unit="statements", goal=f"{goal}, replay"),
            row(f"SQL, {flavour} view, replay: the package's round trips "
                f"({' / '.join(m.text[:40] for m in sides['replay'][-replay_trips:])})",
                {"median": replay_trips}, "1", replay_trips <= 1, unit="round trips",
                goal=f"{goal}, replay"),
        ]  # fmt: skip
        details[flavour] = {
            side: [f"[{', '.join(m.commands)}] {m.text}" for m in messages]
            for side, messages in sides.items()
        }
    return {"rows": rows, "details": details, "counts": "on the wire (libpq trace)"}


def _statements(client: DjangoClient, path: str, key: str | None) -> list[str]:
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    with CaptureQueriesContext(connections["default"]) as captured:
        response = client.post(path, BODY, content_type="application/json", **headers)
    expect(response.status_code, 201, path)
    return [q["sql"] for q in captured.captured_queries]


def _sql_as_django_logs_it() -> dict[str, Any]:
    """Statements Django sends, counted with CaptureQueriesContext.

    Django logs BEGIN, COMMIT and savepoints among them; they are counted
    apart as transaction control.
    """
    client = DjangoClient(HTTP_AUTHORIZATION=AUTHORIZATION)
    rows, details = [], {}
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

        def package(statements: list[str]) -> int:
            return sum(1 for s in statements if not TRANSACTION_CONTROL.match(s)
                       and "idempotency" in s)  # fmt: skip

        added = work(sides["new key"]) - work(sides["bare"])
        replayed = package(sides["replay"])
        control = len(sides["new key"]) - work(sides["new key"])
        details[flavour] = {side: statements for side, statements in sides.items()}
        rows.append(row(f"SQL, {flavour} view, new key: statements added by the package "
                        f"(+ {control} transaction control)", {"median": added}, "≤ 2",
                        added <= 2, unit="statements", goal=f"SQL, {flavour} view, new key"))  # fmt: skip
        rows.append(row(f"SQL, {flavour} view, replay: the package's statements",
                        {"median": replayed}, "1", replayed <= 1, unit="statements",
                        goal=f"SQL, {flavour} view, replay"))  # fmt: skip
    return {"rows": rows, "details": details, "counts": "as Django logs them"}
