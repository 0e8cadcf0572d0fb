from __future__ import annotations

import time
import tracemalloc
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.connection import ConnectionDoesNotExist

from idempotency import purge
from idempotency.management.commands.purge_idempotency_keys import Command
from idempotency.models import IdempotencyRecord, Status
from idempotency.purge import purge_expired
from idempotency.stores.dialects import dialect_for
from tests.factories import IdempotencyRecordFactory

pytestmark = pytest.mark.django_db

TABLE = IdempotencyRecord._meta.db_table


def _set_relative_to_db_clock(record: IdempotencyRecord, **offsets: timedelta) -> None:
    """Time as data: set ``column = database now + offset`` for each column."""
    dialect = dialect_for(connection.vendor)
    quote = connection.ops.quote_name
    columns = ", ".join(f"{quote(name)} = {dialect.now_plus}" for name in offsets)
    params = [dialect.offset(offset) for offset in offsets.values()]
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {quote(TABLE)} SET {columns} WHERE id = %s", [*params, record.pk])


def _remaining() -> set[str]:
    return set(IdempotencyRecord.objects.values_list("key", flat=True))


def _purge(*args: str, **options: object) -> list[str]:
    """Run the command; return what it printed, line by line."""
    out = StringIO()
    call_command("purge_idempotency_keys", *args, stdout=out, **options)
    return out.getvalue().splitlines()


# --- what is deleted --------------------------------------------------------


@pytest.fixture
def through_the_index(monkeypatch: Any) -> None:
    """The purge path that finds records through the expires_at index, batch
    by batch of exactly ``batch_size`` (PostgreSQL reads a table that is
    mostly purgeable page range by page range instead: tests below)."""
    monkeypatch.setattr(purge, "MOSTLY_EXPIRED", 2.0)


def test_purge_deletes_only_expired_records_and_reports_running_totals(through_the_index):
    live = IdempotencyRecordFactory(completed=True)
    IdempotencyRecordFactory.create_batch(5, expired=True, completed=True)
    totals: list[int] = []

    deleted = purge_expired(batch_size=2, progress=totals.append)

    assert deleted == 5
    assert totals == [2, 4, 5]
    assert list(IdempotencyRecord.objects.all()) == [live]


def test_purge_deletes_a_record_as_soon_as_the_database_clock_passes_its_expiry():
    expired = IdempotencyRecordFactory(completed=True, key="expired")
    IdempotencyRecordFactory(completed=True, key="live")
    # One microsecond ago by the database's statement clock. On PostgreSQL the
    # test runs in a transaction, so a purge using NOW() (frozen when that
    # transaction began) would keep it.
    _set_relative_to_db_clock(expired, expires_at=-timedelta(microseconds=1))

    assert purge_expired() == 1
    assert _remaining() == {"live"}


@pytest.mark.parametrize(
    ("status", "expires_in", "lock_expires_in", "purged"),
    [
        # Hours from the database's now; a lock of None is NULL.
        pytest.param(Status.COMPLETED, -1, None, True, id="completed-expired"),
        pytest.param(Status.COMPLETED, +1, None, False, id="completed-unexpired"),
        pytest.param(Status.IN_PROGRESS, -1, -0.5, True, id="in-progress-expired-lock-expired"),
        pytest.param(Status.IN_PROGRESS, -1, +0.5, False, id="in-progress-expired-lock-live"),
        pytest.param(Status.IN_PROGRESS, +1, -0.5, False, id="in-progress-lock-expired-recently"),
        pytest.param(Status.IN_PROGRESS, +1, +0.5, False, id="in-progress-running"),
        pytest.param(Status.IN_PROGRESS, +24 * 29, -25, True, id="in-progress-stale"),
        pytest.param(Status.IN_PROGRESS, +24 * 29, -23, False, id="in-progress-not-yet-stale"),
    ],
)
def test_purge_deletes_expired_and_stale_records_never_running_ones(
    status, expires_in, lock_expires_in, purged
):
    record = IdempotencyRecordFactory(status=status, locked_until=None)
    offsets = {"expires_at": timedelta(hours=expires_in)}
    if lock_expires_in is not None:
        offsets["locked_until"] = timedelta(hours=lock_expires_in)
    _set_relative_to_db_clock(record, **offsets)

    assert purge_expired() == int(purged)
    assert IdempotencyRecord.objects.filter(pk=record.pk).exists() is not purged


def test_stale_means_locked_longer_ago_than_the_ttl_setting(settings):
    settings.IDEMPOTENCY = {"TTL": 3600}
    stale = IdempotencyRecordFactory(key="stale")
    recent = IdempotencyRecordFactory(key="recent")
    _set_relative_to_db_clock(stale, locked_until=-timedelta(hours=2))
    _set_relative_to_db_clock(recent, locked_until=-timedelta(minutes=30))

    assert purge_expired() == 1
    assert _remaining() == {"recent"}


def test_stale_trait_is_purged_although_its_expiry_lies_ahead():
    IdempotencyRecordFactory(stale=True, key="stale")
    IdempotencyRecordFactory(lock_expired=True, key="lock-expired")

    assert purge_expired() == 1
    assert _remaining() == {"lock-expired"}


def test_dry_run_counts_both_kinds_and_deletes_nothing():
    IdempotencyRecordFactory.create_batch(2, expired=True, completed=True)
    IdempotencyRecordFactory(stale=True)
    IdempotencyRecordFactory()
    running = IdempotencyRecordFactory()
    _set_relative_to_db_clock(
        running, expires_at=-timedelta(hours=1), locked_until=timedelta(minutes=1)
    )

    assert purge_expired(dry_run=True) == 3
    assert IdempotencyRecord.objects.count() == 5


# --- --older-than -------------------------------------------------------------


@pytest.mark.parametrize(
    ("older_than", "printed"),
    [
        ("3h", "Deleted 0 expired idempotency records."),
        ("2h1m", "Deleted 0 expired idempotency records."),
        ("1h59m", "Deleted 1 expired idempotency record."),
        ("1h", "Deleted 1 expired idempotency record."),
    ],
)
def test_older_than_keeps_records_that_expired_more_recently(older_than, printed):
    record = IdempotencyRecordFactory(completed=True)
    _set_relative_to_db_clock(record, expires_at=-timedelta(hours=2))

    assert _purge("--older-than", older_than) == [printed]
    assert IdempotencyRecord.objects.filter(pk=record.pk).exists() is printed.startswith(
        "Deleted 0"
    )


def test_older_than_in_python_shifts_the_stale_cutoff_too():
    record = IdempotencyRecordFactory(stale=True)  # lock expired TTL + 1 hour ago

    assert purge_expired(older_than=timedelta(hours=2)) == 0
    assert purge_expired(older_than=timedelta(minutes=30)) == 1
    assert not IdempotencyRecord.objects.filter(pk=record.pk).exists()


def test_older_than_combines_units():
    recent = IdempotencyRecordFactory(completed=True, key="recent")
    old = IdempotencyRecordFactory(completed=True, key="old")
    _set_relative_to_db_clock(recent, expires_at=-timedelta(days=1, hours=11))
    _set_relative_to_db_clock(old, expires_at=-timedelta(days=1, hours=13))

    assert _purge("--older-than", "1d12h") == ["Deleted 1 expired idempotency record."]
    assert _remaining() == {"recent"}


# --- batches and transactions -----------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_each_batch_is_one_delete_committed_on_its_own(through_the_index):
    IdempotencyRecordFactory(completed=True, key="live")
    IdempotencyRecordFactory.create_batch(5, expired=True, completed=True)
    seen_by_another_connection = []
    other = connections.create_connection("default")

    def count_from_outside(total):
        assert not connection.in_atomic_block
        with other.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(TABLE)}")
            seen_by_another_connection.append((total, cursor.fetchone()[0]))

    try:
        with CaptureQueriesContext(connection) as queries:
            assert purge_expired(batch_size=2, progress=count_from_outside) == 5
    finally:
        other.close()

    assert seen_by_another_connection == [(2, 4), (4, 2), (5, 1)]
    deletes = [q["sql"] for q in queries if "DELETE FROM" in q["sql"].upper()]
    # One statement per batch, nothing else: one pass over the stale
    # in-progress records that finds none, then 2 + 2 + 1 expired records.
    assert len(deletes) == 4
    # Besides the batches, only PostgreSQL's look at the table's size estimate.
    reads = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("SELECT")]
    assert all("pg_class" in sql for sql in reads)


def test_purge_refuses_to_run_inside_a_transaction():
    IdempotencyRecordFactory(expired=True, completed=True)

    with pytest.raises(RuntimeError), transaction.atomic():
        purge_expired()
    assert IdempotencyRecord.objects.count() == 1


def test_purge_reads_the_database_setting(settings):
    settings.IDEMPOTENCY = {"DATABASE": "replica"}

    with pytest.raises(ConnectionDoesNotExist):
        purge_expired()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "batch_size must be a whole number of at least 1, not 0."),
        ({"batch_size": 2.5}, "batch_size must be a whole number of at least 1, not 2.5."),
        (
            {"older_than": -timedelta(days=1)},
            "older_than must be between 0 and 100 years, not datetime.timedelta(days=-1).",
        ),
    ],
)
def test_purge_function_refuses_bad_options(options, message):
    with pytest.raises(ValueError) as raised:
        purge_expired(**options)
    assert str(raised.value) == message


# --- the command: output ----------------------------------------------------


def test_command_prints_nothing_at_verbosity_0():
    IdempotencyRecordFactory.create_batch(3, expired=True, completed=True)

    assert _purge(verbosity=0) == []
    assert _purge("--dry-run", verbosity=0) == []
    assert IdempotencyRecord.objects.count() == 0


def test_command_prints_the_count_at_verbosity_1():
    IdempotencyRecordFactory.create_batch(3, expired=True, completed=True)

    assert _purge("--dry-run") == ["3 expired idempotency records would be deleted."]
    assert _purge("--batch-size", "2") == ["Deleted 3 expired idempotency records."]
    assert _purge() == ["Deleted 0 expired idempotency records."]


def test_command_prints_each_batch_at_verbosity_2(through_the_index):
    IdempotencyRecordFactory.create_batch(4, expired=True, completed=True)
    IdempotencyRecordFactory(stale=True)

    assert _purge("--batch-size", "3", "-v", "2") == [
        "Purging expired idempotency records in database 'default', 3 per batch.",
        "Batch 1: 1 deleted (1 so far).",  # the stale in-progress record comes first
        "Batch 2: 3 deleted (4 so far).",
        "Batch 3: 1 deleted (5 so far).",
        "Deleted 5 expired idempotency records.",
    ]


def test_command_dry_run_at_verbosity_2_says_what_it_counts():
    IdempotencyRecordFactory(expired=True, completed=True)

    assert _purge("--dry-run", "--older-than", "30m", "--database", "default", verbosity=2) == [
        "Counting idempotency records that expired more than 30m ago in database 'default', "
        "10000 per batch.",
        "1 expired idempotency record would be deleted.",
    ]
    assert IdempotencyRecord.objects.count() == 1


# --- the command: bad arguments ----------------------------------------------

BATCH_SIZE_HINT = "use a whole number of records from 1 to 1,000,000, such as 10000."
OLDER_THAN_HINT = "use a duration such as 7d, 12h, 30m, 90s or 1d12h."


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], f"Invalid --batch-size '0': {BATCH_SIZE_HINT}"),
        (["--batch-size", "-3"], f"Invalid --batch-size '-3': {BATCH_SIZE_HINT}"),
        (["--batch-size", "abc"], f"Invalid --batch-size 'abc': {BATCH_SIZE_HINT}"),
        (["--batch-size", "1.5"], f"Invalid --batch-size '1.5': {BATCH_SIZE_HINT}"),
        (["--batch-size", ""], f"Invalid --batch-size '': {BATCH_SIZE_HINT}"),
        (["--older-than", "5x"], f"Invalid --older-than '5x': {OLDER_THAN_HINT}"),
        (["--older-than", "-1d"], f"Invalid --older-than '-1d': {OLDER_THAN_HINT}"),
        (["--older-than", ""], f"Invalid --older-than '': {OLDER_THAN_HINT}"),
        (["--older-than", "7"], f"Invalid --older-than '7': {OLDER_THAN_HINT}"),
        (["--older-than", "12h1d"], f"Invalid --older-than '12h1d': {OLDER_THAN_HINT}"),
        (["--older-than", "7 d"], f"Invalid --older-than '7 d': {OLDER_THAN_HINT}"),
        (
            ["--older-than", "99999999999d"],
            "Invalid --older-than '99999999999d': use a duration of at most 100 years, "
            "such as 30d.",
        ),
        (
            ["--database", "replica"],
            "Invalid --database 'replica': use an alias from settings.DATABASES (default, other).",
        ),
    ],
)
def test_command_refuses_bad_arguments_with_a_clear_message(args, message):
    IdempotencyRecordFactory(expired=True, completed=True)

    with pytest.raises(CommandError) as raised:
        _purge(*args)
    assert str(raised.value) == message
    assert IdempotencyRecord.objects.count() == 1


@pytest.mark.django_db(transaction=True)  # run_from_argv closes the connections
def test_command_line_reports_a_bad_argument_without_a_traceback(capsys):
    with pytest.raises(SystemExit) as exited:
        Command().run_from_argv(["manage.py", "purge_idempotency_keys", "--older-than", "-1d"])

    assert exited.value.code == 1
    assert (
        capsys.readouterr().err == f"CommandError: Invalid --older-than '-1d': {OLDER_THAN_HINT}\n"
    )


# --- memory -----------------------------------------------------------------


def _insert_expired(count: int, prefix: str) -> None:
    """``count`` completed records that expired an hour ago, in one statement."""
    dialect = dialect_for(connection.vendor)
    quote = connection.ops.quote_name
    columns = ", ".join(
        quote(c)
        for c in (
            "scope", "key", "fingerprint", "status", "method", "path",
            "response_headers", "version", "created_at", "expires_at",
        )
    )  # fmt: skip
    if connection.vendor == "postgresql":
        head, key, numbers = "", "CAST(%s AS TEXT) || n", "generate_series(1, %s) AS seq(n)"
    elif connection.vendor == "sqlite":
        head = "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < %s) "
        key, numbers = "%s || n", "seq"
    else:  # MariaDB caps recursive CTEs at 1000 rows: digits, cross-joined.
        digits = " UNION ALL ".join(f"SELECT {d} AS d" for d in range(10))
        places = ", ".join(f"({digits}) AS p{i}" for i in range(5))
        number = " + ".join(f"p{i}.d * {10**i}" for i in range(5))
        head, key = "", "CONCAT(%s, n)"
        numbers = f"(SELECT {number} + 1 AS n FROM {places}) AS seq WHERE n <= %s"
    sql = (
        f"{head}INSERT INTO {quote(TABLE)} ({columns}) "
        f"SELECT 'bulk', {key}, %s, 'completed', 'POST', '/bulk/', '{{}}', 2, "
        f"{dialect.now_plus}, {dialect.now_plus} FROM {numbers}"
    )
    params = [
        prefix,
        "0" * 64,
        dialect.offset(-timedelta(hours=25)),
        dialect.offset(-timedelta(hours=1)),
    ]
    params = [count, *params] if head else [*params, count]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _purge_traced(count: int, label: str) -> int:
    """Purge ``count`` fresh expired records; return the purge's peak of traced memory."""
    started = time.perf_counter()
    _insert_expired(count, label)
    inserted = time.perf_counter()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    assert purge_expired() == count
    peak = tracemalloc.get_traced_memory()[1] - before
    print(
        f"{connection.vendor} {label}: insert {inserted - started:.2f} s, "
        f"purge {time.perf_counter() - inserted:.2f} s, peak {peak / 1024:.0f} KiB"
    )
    return peak


@pytest.mark.django_db(transaction=True)
def test_purge_of_100k_records_runs_in_flat_memory():
    # Not marked slow on purpose: it runs everywhere, CI included, because it
    # is the proof that a purge of millions of rows never loads them at once.
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        purge_expired()  # warm up: imports and first compilations are not the purge's
        peak_20k = _purge_traced(20_000, "20k")
        peak_100k = _purge_traced(100_000, "100k")
    finally:
        if not was_tracing:
            tracemalloc.stop()

    assert not IdempotencyRecord.objects.exists()
    # Flat: five times the rows, not more memory (with a margin for noise,
    # since a batch of primary keys is no longer held in Python at all).
    assert peak_100k <= 1.5 * peak_20k + 256 * 1024
    assert peak_100k < 20 * 1024 * 1024


# --- PostgreSQL: a mostly purgeable table, read page range by page range ------


@pytest.mark.skipif(connection.vendor != "postgresql", reason="TID range scans are PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_a_mostly_expired_table_is_purged_by_page_ranges_each_committed_on_its_own():
    kept = [
        IdempotencyRecordFactory(completed=True, key="live"),
        IdempotencyRecordFactory(expired=True, key="running",
                                 locked_until=timezone.now() + timedelta(minutes=5)),
    ]  # fmt: skip
    IdempotencyRecordFactory.create_batch(300, expired=True, completed=True)
    IdempotencyRecordFactory.create_batch(3, stale=True)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {connection.ops.quote_name(TABLE)}")
    totals: list[int] = []

    with CaptureQueriesContext(connection) as queries:
        deleted = purge_expired(batch_size=50, progress=totals.append)

    assert deleted == 303
    assert sorted(r.pk for r in IdempotencyRecord.objects.all()) == sorted(r.pk for r in kept)
    deletes = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("DELETE")]
    assert deletes and all("ctid >=" in sql for sql in deletes)
    assert len(totals) > 1 and totals == sorted(totals) and totals[-1] == 303
    commits = [q for q in queries if q["sql"].strip().upper() == "COMMIT"]
    assert len(commits) == len(deletes)  # one transaction per page range
