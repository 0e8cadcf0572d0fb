"""Duplicates that collide on database locks get 409, never 503.

With ``ATOMIC_REQUESTS`` on, a duplicate's claim waits on the unique
``(scope, key)`` index for the first request's transaction. When that
transaction ends, the database may refuse the waiting insert outright:

* MariaDB: the first request's view answers 500, so its record is released;
  the waiters, all holding shared locks on the index entry, deadlock
  (errno 1213) as they insert.
* PostgreSQL at REPEATABLE READ: the row the waiting ``INSERT .. ON CONFLICT``
  conflicts with is not in its snapshot: serialization failure (40001).

These are lock conflicts between duplicates of one request, not an
unreachable store: the answer is 409 ``request-in-progress`` with
``Retry-After``. The database errors are observed, not provoked, through
``connection.execute_wrapper``; the run's summary prints how often they came.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import DatabaseError, connection, connections, transaction
from django.test import Client

from idempotency.keys import digest
from idempotency.models import IdempotencyRecord, Status
from tests.concurrency.race import ROUNDS, TALLIES, Answer, client_answer, run_together
from tests.testapp.models import Charge

pytestmark = pytest.mark.concurrency

# The first request and about seven duplicates queued behind it.
REQUESTS_PER_KEY = 8
# Long enough for every duplicate to be waiting on the index when the first
# request's transaction ends; every execution sleeps, the retry's included.
SLEEP = 0.3
# Lock conflicts: PostgreSQL SQLSTATEs serialization_failure, deadlock_detected,
# lock_not_available; MariaDB lock wait timeout, deadlock.
CONTENTION_CODES = frozenset({"40001", "40P01", "55P03", "1205", "1213"})


class DatabaseErrors:
    """Counts the database errors raised in the threads that it observes, by
    SQLSTATE (PostgreSQL) or error number (MariaDB); it changes nothing."""

    def __init__(self) -> None:
        self.codes: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        try:
            return execute(sql, params, many, context)
        except DatabaseError as error:
            with self._lock:
                self.codes[error_code(error)] += 1
            raise

    @property
    def contention(self) -> int:
        return sum(n for code, n in self.codes.items() if code in CONTENTION_CODES)


def error_code(error: DatabaseError) -> str:
    driver_error = error.__cause__ or error
    sqlstate = getattr(driver_error, "sqlstate", None)
    if sqlstate:
        return str(sqlstate)
    code = driver_error.args[0] if driver_error.args else None
    return str(code) if isinstance(code, int) else type(driver_error).__name__


@pytest.fixture
def marker_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where ``fails_first_view`` counts its executions; files survive rollbacks."""
    monkeypatch.setenv("IDEMPOTENCY_TEST_MARKER_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def repeatable_read(settings: Any, transactional_db: None) -> Iterator[None]:
    """REPEATABLE READ for every new connection to the default database.

    The backends read ``OPTIONS["isolation_level"]`` when they connect, from
    the settings dict that every thread's connection shares; the ``settings``
    fixture does not undo this in-place edit, so it is undone here, and the
    main thread's connection is closed so that it reconnects at the default.
    """
    database = settings.DATABASES["default"]
    assert database is connections["default"].settings_dict
    options = database["OPTIONS"]
    missing = object()
    before = options.get("isolation_level", missing)
    if connection.vendor == "postgresql":
        import psycopg

        options["isolation_level"] = psycopg.IsolationLevel.REPEATABLE_READ
    else:
        options["isolation_level"] = "repeatable read"
    try:
        yield
    finally:
        if before is missing:
            del options["isolation_level"]
        else:
            options["isolation_level"] = before
        connections["default"].close()


def thread_isolation_level() -> str:
    """The isolation level of a transaction on a new connection, as a request
    thread gets it (psycopg sets it per transaction, not per session)."""

    def read() -> str:
        if connection.vendor == "postgresql":
            sql = "SHOW transaction_isolation"
        else:
            sql = "SELECT @@SESSION.tx_isolation"
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
            (level,) = cursor.fetchone()
        return str(level).lower().replace("-", " ")

    [level] = run_together([read])
    return level


def poster(key: str, body: dict[str, Any], errors: DatabaseErrors) -> Callable[[], Answer]:
    def post() -> Answer:
        with connection.execute_wrapper(errors):
            response = Client().post(
                "/fails-first/",
                data=json.dumps(body),
                content_type="application/json",
                headers={"Idempotency-Key": key},
            )
        return client_answer(response)

    return post


def classify(answer: Answer, original: Answer | None) -> str:
    """The kind of one answer; anything outside the contract fails here."""
    if answer.status == 503:
        return "503"  # counted, so that the failure shows the whole storm
    if answer.status == 201 and not answer.replayed:
        return "201"
    if answer.replayed:
        assert original is not None, "a replay without an original in the storm"
        assert (answer.status, answer.body) == (original.status, original.body)
        return "replay"
    if answer.status == 500:
        assert answer.json == {"error": "the first execution fails", "id": answer.json["id"]}
        return "500"
    assert answer.status == 409, (answer.status, answer.headers, answer.body)
    assert answer.problem_slug == "request-in-progress", answer.body
    assert int(answer.headers["retry-after"]) > 0
    # The 409 of a claim refused by a lock conflict reads like any other
    # in-progress 409; one whose view was rolled back by it mentions the lock.
    return "409 lock" if "lock" in answer.json["detail"] else "409"


def storm(label: str, fail_first: bool, marker_dir: Path) -> Counter[str]:
    """One key, REQUESTS_PER_KEY duplicates at once, then a retry; asserts the
    invariants and returns the tally, database errors included."""
    key = str(uuid.uuid4())
    body = {"amount": 7, "sleep": SLEEP, "fail_first": fail_first}
    errors = DatabaseErrors()
    before = Charge.objects.filter(label="fails-first").count()

    answers = run_together([poster(key, body, errors) for _ in range(REQUESTS_PER_KEY)])

    originals = [a for a in answers if a.status == 201 and not a.replayed]
    assert len(originals) <= 1, [(a.status, a.body) for a in answers]
    original = originals[0] if originals else None
    tally = Counter(classify(answer, original) for answer in answers)
    assert tally["503"] == 0, (label, tally, errors.codes)
    assert tally["500"] == (1 if fail_first else 0), (label, tally)
    # Every execution of the view is one of the answers: the failed first one
    # and the original, no hidden run whose answer was lost.
    executions = len((marker_dir / f"{key}.runs").read_text().splitlines())
    assert executions == tally["500"] + tally["201"], (label, tally, executions)
    # The failed execution's Charge was rolled back with it.
    committed = Charge.objects.filter(label="fails-first").count() - before
    assert committed == tally["201"], (label, tally, committed)
    record = IdempotencyRecord.objects.filter(key=digest(key)).first()
    if original is None:
        assert record is None, (label, tally, record and record.status)
    else:
        assert record is not None
        assert (record.status, bytes(record.response_body)) == (Status.COMPLETED, original.body)

    [retry] = run_together([poster(key, body, errors)])
    assert retry.status == 201, (label, tally, retry.status, retry.body)
    if original is not None:
        assert (retry.replayed, retry.body) == (True, original.body)
        tally["retry replay"] += 1
    else:
        assert not retry.replayed
        tally["retry 201"] += 1
    assert Charge.objects.filter(label="fails-first").count() - before == 1

    # The only database errors are the lock conflicts answered with 409.
    assert set(errors.codes) <= CONTENTION_CODES, (label, errors.codes)
    for code, n in errors.codes.items():
        tally[f"db error {code}"] += n
    tally["contention"] += errors.contention
    return tally


def run_storms(label: str, fail_first: bool, marker_dir: Path, caplog: Any) -> Counter[str]:
    caplog.set_level(logging.INFO, logger="idempotency")
    total: Counter[str] = Counter()
    for round_ in range(ROUNDS):
        tally = storm(f"{label} round {round_ + 1}", fail_first, marker_dir)
        TALLIES.append(f"{label} round {round_ + 1}: {format_tally(tally)}")
        total += tally
    unavailable = [r for r in caplog.records if "store unavailable" in r.getMessage()]
    assert unavailable == [], [r.getMessage() for r in unavailable]
    total["log in progress"] = sum("key in progress" in r.getMessage() for r in caplog.records)
    total["log released"] = sum("record released" in r.getMessage() for r in caplog.records)
    TALLIES.append(f"{label} total of {ROUNDS} rounds: {format_tally(total)}")
    return total


def format_tally(tally: Counter[str]) -> str:
    kinds = ("201", "500", "replay", "409", "409 lock", "503", "contention")
    fixed = [f"{kind}={tally[kind]}" for kind in kinds]
    extra = [f"{kind}={n}" for kind, n in sorted(tally.items()) if kind not in kinds]
    return " ".join(fixed + extra)


@pytest.mark.parametrize("fail_first", [True, False], ids=["first-answers-500", "first-201"])
def test_duplicates_refused_by_a_serialization_failure_get_409_not_503(
    transactional_db, atomic_requests_on, repeatable_read, marker_dir, caplog, fail_first
):
    assert thread_isolation_level() == "repeatable read"
    label = (
        f"contention, REPEATABLE READ, ATOMIC_REQUESTS on, "
        f"{'first answers 500' if fail_first else 'first answers 201'} ({connection.vendor})"
    )
    total = run_storms(label, fail_first, marker_dir, caplog)
    if connection.vendor == "postgresql":
        # Reproduced on every round in practice (every waiting duplicate);
        # asserted once per test so that a slow thread start cannot flake it.
        assert total["db error 40001"] > 0, total
    # MariaDB: the waiters deadlock (1213) in some rounds only, at this level
    # too (see the test below); the summary prints how often.


def test_duplicates_deadlocked_after_the_first_answers_500_get_409_not_503(
    transactional_db, atomic_requests_on, marker_dir, caplog
):
    # Also proves that the REPEATABLE READ test above restored the default.
    assert thread_isolation_level() == "read committed"
    # MariaDB deadlocks (1213) the waiters in some rounds only (3 to 6 rounds
    # in 20, 0 to 3 in 5, whatever the number of duplicates): the invariants
    # are asserted on every round and the summary prints how often it came. PostgreSQL at
    # READ COMMITTED re-checks the conflict after the wait: replays, no error.
    label = (
        f"contention, READ COMMITTED, ATOMIC_REQUESTS on, first answers 500 ({connection.vendor})"
    )
    run_storms(label, True, marker_dir, caplog)
