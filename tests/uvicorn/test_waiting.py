"""Waiting for a running duplicate under uvicorn (contract section 11): the
duplicate of an async view with ``wait=`` replays the first request's answer
instead of 409, while it waits holds no database transaction and no lock
(what PgBouncer's transaction pooling needs), another body is 422 at once,
and a wait that ends first is 409 with Retry-After."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection

from tests.testapp.models import Charge

pytestmark = [pytest.mark.server_process, pytest.mark.django_db(transaction=True)]

# Enough observations of the waiting duplicate between two of its claims.
POLLS_SEEN = 3


@dataclass(frozen=True)
class Session:
    """One database session of the server, as the database reports it."""

    id: int
    idle: bool  # between statements, outside any transaction
    in_transaction: bool  # between statements, inside a transaction
    last_query: object  # changes with every statement (PostgreSQL) or query (MariaDB)
    transaction_older_than_last_query: bool
    locks: int  # locks it holds or waits for (PostgreSQL: every kind; MariaDB: InnoDB's)
    advisory_locks: int


def server_sessions() -> list[Session]:
    """Every session on the test database but the test's own."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT a.pid, a.state = 'idle', a.state = 'idle in transaction', a.query_start, "
                "coalesce(a.xact_start < a.query_start, false), "
                "(SELECT count(*) FROM pg_locks l WHERE l.pid = a.pid), "
                "(SELECT count(*) FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory') "
                "FROM pg_stat_activity a WHERE a.datname = current_database() "
                "AND a.pid <> pg_backend_pid() AND a.backend_type = 'client backend'"
            )
        else:
            # MariaDB: a session in a transaction has an InnoDB transaction
            # row; user-level locks (GET_LOCK) are listed by IS_USED_LOCK only
            # per name, so none are counted here.
            cursor.execute(
                "SELECT p.id, p.command = 'Sleep' AND t.trx_id IS NULL, "
                "p.command = 'Sleep' AND t.trx_id IS NOT NULL, p.query_id, 0, "
                "coalesce(t.trx_rows_locked, 0) + coalesce(t.trx_tables_locked, 0), 0 "
                "FROM information_schema.processlist p LEFT JOIN information_schema.innodb_trx t "
                "ON t.trx_mysql_thread_id = p.id "
                "WHERE p.db = DATABASE() AND p.id <> CONNECTION_ID()"
            )
        return [
            Session(int(id_), bool(idle), bool(in_txn), last, bool(older), int(locks), int(adv))
            for id_, idle, in_txn, last, older, locks, adv in cursor.fetchall()
        ]


def summary(samples: list[Session]) -> str:
    """How often each kind of session was seen, for a failure's message."""
    kinds = Counter(
        (s.id, "idle" if s.idle else "in transaction" if s.in_transaction else "active",
         f"transaction older than its last query={s.transaction_older_than_last_query}",
         f"locks={s.locks}", f"advisory={s.advisory_locks}")
        for s in samples
    )  # fmt: skip
    return "; ".join(f"{kind}: {count}x" for kind, count in kinds.items())


def observe_waiting(duplicate: Future[Any], before: set[int]) -> list[Session]:
    """Samples of the sessions that appeared since ``before``, while the
    duplicate waits, until one of them was seen idle after POLLS_SEEN claims."""
    samples: list[Session] = []
    deadline = time.monotonic() + 20  # a bound on a broken run, not a measurement
    while time.monotonic() < deadline:
        assert not duplicate.done(), duplicate.result()
        samples += [s for s in server_sessions() if s.id not in before]
        idle_after: dict[int, set[object]] = {}
        for sample in samples:
            if sample.idle:
                idle_after.setdefault(sample.id, set()).add(sample.last_query)
        if any(len(queries) >= POLLS_SEEN for queries in idle_after.values()):
            return samples
        time.sleep(0.005)
    raise AssertionError(f"the waiting duplicate was not seen polling: {summary(samples)}")


def test_a_waiting_duplicate_replays_and_holds_no_transaction_or_lock(asgi):
    key, gate = str(uuid.uuid4()), uuid.uuid4().hex
    body = {"amount": 5, "gate": gate}
    with ThreadPoolExecutor(max_workers=2) as pool:
        try:
            first = pool.submit(asgi.server.request, "POST", "/async-waiting/", body, key)
            asgi.gates.entered(gate, asgi.server)
            before = {session.id for session in server_sessions()}
            duplicate = pool.submit(asgi.server.request, "POST", "/async-waiting/", body, key)
            samples = observe_waiting(duplicate, before)
        finally:
            asgi.gates.open(gate)
        original, replay = first.result(timeout=60), duplicate.result(timeout=60)

    assert (original.status, original.replayed) == (201, False)
    assert (replay.status, replay.replayed, replay.body) == (201, True, original.body)
    assert Charge.objects.count() == 1
    # Between its claims the duplicate's session is idle: no transaction, no lock.
    assert all(sample.locks == 0 for sample in samples if sample.idle), summary(samples)
    assert not any(sample.advisory_locks for sample in samples), summary(samples)
    # A transaction seen between two statements began with the last of them
    # (PostgreSQL's claim message ends in BEGIN; a ROLLBACK follows at once):
    # none is held across a pause.
    assert not any(
        sample.in_transaction and sample.transaction_older_than_last_query for sample in samples
    ), summary(samples)


def test_another_body_is_422_at_once_while_a_duplicate_could_wait(asgi):
    key, gate = str(uuid.uuid4()), uuid.uuid4().hex
    body = {"amount": 5, "gate": gate}
    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            first = pool.submit(asgi.server.request, "POST", "/async-waiting/", body, key)
            asgi.gates.entered(gate, asgi.server)
            other = asgi.server.request("POST", "/async-waiting/", {**body, "amount": 6}, key)
            answered_while_first_ran = not first.done()
        finally:
            asgi.gates.open(gate)
        assert first.result(timeout=60).status == 201

    assert answered_while_first_ran
    assert (other.status, other.problem_slug) == (422, "key-reused")
    assert Charge.objects.count() == 1


def test_a_duplicate_whose_wait_ends_first_is_409_with_retry_after(asgi):
    key, gate = str(uuid.uuid4()), uuid.uuid4().hex
    body = {"amount": 5, "gate": gate}
    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            first = pool.submit(asgi.server.request, "POST", "/async-short-wait/", body, key)
            asgi.gates.entered(gate, asgi.server)
            duplicate = asgi.server.request("POST", "/async-short-wait/", body, key)
            answered_while_first_ran = not first.done()
        finally:
            asgi.gates.open(gate)
        assert first.result(timeout=60).status == 201

    assert answered_while_first_ran
    assert (duplicate.status, duplicate.problem_slug) == (409, "request-in-progress")
    assert int(duplicate.headers["retry-after"]) > 0
    assert Charge.objects.count() == 1
