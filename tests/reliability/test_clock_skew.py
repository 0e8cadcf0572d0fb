"""App servers with skewed clocks agree on expiry and locks: the database's
clock decides (contract section 2).

Two real gunicorn servers run at once against the same test database, each
under libfaketime (``LD_PRELOAD`` + ``FAKETIME``, what the ``faketime``
command sets): one two hours behind, one three hours ahead. Their skew is
checked first, from their own answers. Every other time in these tests is the
database's, read by this process with the store's own SQL clock.

PostgreSQL and MariaDB only: SQLite has no server, so its "database clock"
is the app process's own C library clock, which libfaketime skews with the
app; the test would be meaningless there.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from idempotency.keys import digest
from idempotency.models import IdempotencyRecord, Status
from idempotency.stores.dialects import dialect_for
from tests.servers import Server, gunicorn_server
from tests.testapp.models import Charge

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("IDEMPOTENCY_TEST_DB", "sqlite") not in ("postgresql", "mariadb"),
        reason="SQLite's clock is the skewed app process's own clock",
    ),
    pytest.mark.django_db(transaction=True),
]

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
SKEWS = {"behind": -2 * 3600, "ahead": 3 * 3600}
LOCK_TIMEOUT = timedelta(seconds=3)
SHORT_TTL = timedelta(seconds=2)  # tests/testapp/views.py short_ttl_view


@pytest.fixture(scope="module")
def servers(django_db_setup: None, tmp_path_factory: Any) -> Iterator[dict[str, Server]]:
    assert Path(LIBFAKETIME).exists(), "apt-get install faketime"
    started: dict[str, Server] = {}
    with (
        gunicorn_server(
            tmp_path_factory.mktemp("behind"), workers=2,
            lock_timeout=LOCK_TIMEOUT.total_seconds(), env=faked(SKEWS["behind"]),
        ) as started["behind"],
        gunicorn_server(
            tmp_path_factory.mktemp("ahead"), workers=2,
            lock_timeout=LOCK_TIMEOUT.total_seconds(), env=faked(SKEWS["ahead"]),
        ) as started["ahead"],
    ):  # fmt: skip
        yield started


def faked(offset: int) -> dict[str, str]:
    # Every clock is shifted alike, monotonic included: with the monotonic
    # clock left real, libfaketime shifts time.sleep()'s absolute deadline
    # and the sleep fails with EINVAL, killing gunicorn's master.
    return {"LD_PRELOAD": LIBFAKETIME, "FAKETIME": f"{offset:+d}"}


def database_now() -> datetime:
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + dialect_for(connection.vendor).now.replace("%%", "%"))
        (now,) = cursor.fetchone()
    if isinstance(now, str):
        now = datetime.fromisoformat(now)
    return now if now.tzinfo else now.replace(tzinfo=timezone.utc)


def test_the_servers_clocks_are_skewed_and_the_database_clock_is_not(servers):
    for name, server in servers.items():
        answer = server.request("GET", "/clock/")
        assert answer.status == 200
        skew = answer.json["app"] - time.time()
        assert abs(skew - SKEWS[name]) < 60, (name, skew)
        assert abs((database_now() - datetime.now(timezone.utc)).total_seconds()) < 5


@pytest.mark.parametrize("name", sorted(SKEWS))
def test_records_carry_the_database_clock_not_the_app_clock(servers, name):
    key = str(uuid.uuid4())
    before = database_now()

    answer = servers[name].request("POST", "/plain/", {"amount": 1}, key)

    after = database_now()
    assert answer.status == 201
    record = IdempotencyRecord.objects.get(key=digest(key))
    assert before <= record.created_at <= after
    assert record.expires_at - record.created_at == timedelta(hours=24)
    assert record.locked_until is None


@pytest.mark.parametrize(("writer", "reader"), [("ahead", "behind"), ("behind", "ahead")])
def test_expiry_is_when_the_database_says_whichever_server_wrote_or_reads(servers, writer, reader):
    key = str(uuid.uuid4())
    body = {"amount": 3}
    first = servers[writer].request("POST", "/short-ttl/", body, key)
    assert first.status == 201
    record = IdempotencyRecord.objects.get(key=digest(key))
    assert record.expires_at - record.created_at == SHORT_TTL

    # Retry through the other server until the key is usable again.
    answers = []
    while True:
        sent = database_now()
        answer = servers[reader].request("POST", "/short-ttl/", body, key)
        answered = database_now()
        answers.append((sent, answer.status, answer.replayed, answered))
        if not answer.replayed:
            break
        assert answered - record.expires_at < timedelta(seconds=5), answers
        time.sleep(0.2)

    replays, rerun = answers[:-1], answers[-1]
    assert replays, "the first retry must come before the expiry and replay"
    # A replay is answered while the database's clock is before expires_at...
    assert all(sent < record.expires_at for sent, *_ in replays), answers
    assert all(status == 201 for _, status, _, _ in replays)
    # ...and the key is reused once the database's clock has passed it.
    sent, status, _, answered = rerun
    assert status == 201
    assert answered >= record.expires_at, answers
    assert Charge.objects.count() == 2


@pytest.mark.parametrize(("holder", "taker"), [("behind", "ahead"), ("ahead", "behind")])
def test_takeover_happens_when_the_database_says_the_lock_expired(servers, holder, taker):
    key = str(uuid.uuid4())
    body = {"amount": 4, "sleep": 6}
    with ThreadPoolExecutor(max_workers=1) as pool:
        before = database_now()
        held = pool.submit(servers[holder].request, "POST", "/plain/", body, key)
        deadline = time.monotonic() + 10
        while not IdempotencyRecord.objects.filter(key=digest(key)).exists():
            assert time.monotonic() < deadline, "the holder never claimed the key"
            time.sleep(0.05)
        record = IdempotencyRecord.objects.get(key=digest(key))
        assert record.status == Status.IN_PROGRESS
        assert before <= record.created_at <= database_now()
        assert record.locked_until - record.created_at == LOCK_TIMEOUT

        answers = []
        while True:
            sent = database_now()
            answer = servers[taker].request("POST", "/plain/", body, key)
            answered = database_now()
            answers.append((sent, answer.status, answer.problem_slug, answered))
            if answer.status != 409:
                break
            assert answer.problem_slug == "request-in-progress"
            assert answered - record.locked_until < timedelta(seconds=5), answers
            time.sleep(0.25)
        holder_answer = held.result(timeout=30)

    refused, taken = answers[:-1], answers[-1]
    assert refused, "the first retry must come while the lock holds and get 409"
    assert all(sent < record.locked_until for sent, *_ in refused), answers
    assert taken[1] == 201 and taken[3] >= record.locked_until, answers
    # The holder's update fails the version check: rolled back, not stored.
    assert (holder_answer.status, holder_answer.problem_slug) == (409, "request-superseded")
    record.refresh_from_db()
    assert (record.status, record.version) == (Status.COMPLETED, 3)
    assert Charge.objects.count() == 1
