"""The benchmark suite's own measuring pieces (benchmarks/): what they count,
they count exactly. No timings are asserted here; the numbers live in the
benchmark reports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmarks import cpu, minimal, wire
from benchmarks.scenarios import new_key_verdict, replay_verdict
from tests.conftest import TEST_DB

# A child that burns the CPU time it is asked for (its own process_time, so the
# amount does not depend on how busy the machine is), then says so.
BURNER = """
import sys, time
for line in sys.stdin:
    goal = time.process_time() + float(line)
    while time.process_time() < goal:
        pass
    print("burnt", flush=True)
"""


@pytest.fixture
def burner():
    child = subprocess.Popen([sys.executable, "-c", BURNER], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)  # fmt: skip

    def burn(seconds: float) -> None:
        child.stdin.write(f"{seconds}\n")
        child.stdin.flush()
        assert child.stdout.readline() == "burnt\n"

    burn.pid = child.pid
    try:
        yield burn
    finally:
        child.stdin.close()
        child.wait(timeout=30)


def test_cpu_seconds_reads_the_kernels_utime_and_stime(burner):
    before = cpu.cpu_seconds(burner.pid)
    burner(0.3)
    after = cpu.cpu_seconds(burner.pid)
    # process_time counts the same utime + stime, at finer resolution than a tick.
    assert after - before >= 0.3 - 2 * cpu.TICK_S


def test_cpu_seconds_of_a_process_that_is_gone_is_none():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert cpu.cpu_seconds(child.pid) is None
    assert cpu.total([child.pid]) == {}


def test_meter_divides_each_sides_cpu_by_its_requests_and_reports_what_the_package_adds(burner):
    meter = cpu.CpuMeter(app_pids=lambda: {burner.pid})
    for side, seconds in (("bare", 0.1), ("package", 0.3), ("bare", 0.1), ("package", 0.3)):
        before = meter.reading()
        burner(seconds)
        meter.add(side, before, requests=10)
    summary = meter.summary()
    assert summary["bare"]["requests"] == summary["package"]["requests"] == 20
    assert summary["bare"]["app_s"] == pytest.approx(0.01, abs=4 * cpu.TICK_S / 20)
    assert summary["package"]["app_s"] == pytest.approx(0.03, abs=4 * cpu.TICK_S / 20)
    assert summary["package added"]["app_s"] == pytest.approx(0.02, abs=8 * cpu.TICK_S / 20)
    assert summary["package added"]["db_s"] is None  # no database side was given


def test_meter_leaves_out_a_process_seen_in_only_one_reading(burner):
    pids = {burner.pid}
    meter = cpu.CpuMeter(app_pids=lambda: set(pids))
    before = meter.reading()
    pids.clear()  # the worker went away during the block
    burner(0.05)
    meter.add("bare", before, requests=1)
    assert meter.summary()["bare"]["app_s"] == 0


@pytest.mark.parametrize(
    ("flavour", "ratio", "added_s", "met"),
    [
        ("django", 1.20, 0.000_30, True),
        ("django", 1.20, 0.000_40, False),  # the ratio alone is not enough
        ("django", 1.30, 0.000_10, False),
        ("drf", 1.15, 0.002, True),
        ("drf-token", 1.11, 0.0, False),
    ],
)
def test_new_key_targets_are_the_issues(flavour, ratio, added_s, met):
    assert new_key_verdict(flavour, ratio, added_s)[1] is met


def test_replay_of_the_token_view_must_cost_at_most_seventy_percent():
    assert replay_verdict("drf-token", 0.70) == ("≤ 0.70", True)
    assert replay_verdict("drf-token", 0.71)[1] is False
    assert replay_verdict("django", 1.0) == ("< 1.0", False)


TRACE = (
    "F\t29\tQuery\t \"SELECT 'x'; SELECT 'a;b'\"\n"
    'B\t33\tRowDescription\t 1 "?column?" NNNN 0 NNNN 65535 -1 0\n'
    "B\t11\tDataRow\t 1 1 'x'\n"
    'B\t13\tCommandComplete\t "SELECT 1"\n'
    'B\t13\tCommandComplete\t "SELECT 1"\n'
    "B\t5\tReadyForQuery\t I\n"
    'F\t40\tQuery\t "SELECT f(1); COMMIT; BEGIN"\n'
    'B\t13\tCommandComplete\t "SELECT 1"\n'
    'B\t11\tCommandComplete\t "COMMIT"\n'
    'B\t10\tCommandComplete\t "BEGIN"\n'
    "B\t5\tReadyForQuery\t T\n"
    'F\t30\tParse\t "" "INSERT INTO t VALUES ($1)" 0\n'
    'F\t20\tBind\t "" "" 0 1 1 \'1\' 1 0\n'
    'F\t6\tExecute\t "" 0\n'
    "F\t4\tSync\n"
    'B\t15\tCommandComplete\t "INSERT 0 1"\n'
    "B\t5\tReadyForQuery\t T\n"
)


def test_wire_counts_messages_as_round_trips_and_each_completed_statement():
    messages = wire.parse(TRACE)
    assert [m.text for m in messages] == [
        "SELECT 'x'; SELECT 'a;b'",
        "SELECT f(1); COMMIT; BEGIN",
        "INSERT INTO t VALUES ($1)",
    ]
    assert [m.commands for m in messages] == [
        ["SELECT 1", "SELECT 1"],
        ["SELECT 1", "COMMIT", "BEGIN"],
        ["INSERT 0 1"],
    ]
    assert wire.counts(messages, package_marker="f(") == {
        "round_trips": 3,
        "statements": 4,
        "transaction_control": 2,
        "package_statements": 1,
    }


@pytest.mark.skipif(TEST_DB != "postgresql", reason="libpq's trace: PostgreSQL only")
@pytest.mark.django_db
def test_wire_capture_sees_what_the_connection_sends_and_what_django_executed():
    from django.db import connection

    with wire.capture() as captured, connection.cursor() as cursor:
        cursor.execute("SELECT %s; SELECT 2", ["a;b"])
        # The first result has no rows: the values are the next result's.
        cursor.execute("SET LOCAL lock_timeout = '1s'; SELECT 3")
    # The test's transaction: psycopg sends the BEGIN that Django never executes.
    assert [m.text for m in captured.messages] == [
        "BEGIN",
        "SELECT 'a;b'; SELECT 2",
        "SET LOCAL lock_timeout = '1s'; SELECT 3",
    ]
    assert captured.messages[1].commands == ["SELECT 1", "SELECT 1"]
    assert captured.messages[2].commands == ["SET", "SELECT 1"]
    assert [(e.sql, e.params, e.rows) for e in captured.executions] == [
        ("SELECT %s; SELECT 2", ["a;b"], [["a;b"]]),
        ("SET LOCAL lock_timeout = '1s'; SELECT 3", [], [["3"]]),
    ]


def test_minimal_sequence_replays_the_wire_with_a_fresh_key_and_the_claimed_record_id():
    claim = "SELECT * FROM idempotency_claim_v1(%s, %s); COMMIT; BEGIN"
    insert = "INSERT INTO orders VALUES (%s) RETURNING id"
    complete = "SELECT idempotency_complete_v1(%s, %s); COMMIT"
    captured = wire.Capture(
        executions=[
            wire.Execution(claim, ["anonymous", "d" * 64], 0.0, [["t", "42"]]),
            # The view's row has the record's id by chance: not a placeholder source.
            wire.Execution(insert, [42], 0.0, [["42"]]),
            wire.Execution(complete, [42, 1], 0.0, [[""]]),
        ],
        messages=[
            wire.Message("BEGIN", ["BEGIN"]),  # psycopg's own, never executed by Django
            wire.Message("claim", ["SELECT 1", "COMMIT", "BEGIN"]),
            wire.Message("insert", ["INSERT 0 1"]),
            wire.Message("complete", ["SELECT 1", "COMMIT"]),
        ],
    )
    steps = minimal.steps(captured, "d" * 64)
    assert steps == [
        minimal.Step("BEGIN", None),
        minimal.Step(claim, ["anonymous", minimal.FreshKey(64)]),
        minimal.Step(insert, [42]),
        minimal.Step(complete, [minimal.Result(step=1, column=1), 1]),
    ]


def test_minimal_sequence_refuses_executions_that_never_reached_the_wire():
    captured = wire.Capture(executions=[wire.Execution("SELECT 1", [], 0.0, [])], messages=[])
    with pytest.raises(RuntimeError, match="never reached the wire"):
        minimal.steps(captured, None)


def test_meter_reads_the_database_side_from_the_processes_it_is_given(burner):
    meter = cpu.CpuMeter(app_pids=set, db_pids=lambda: {burner.pid})
    before = meter.reading()
    burner(0.2)
    meter.add("package", before, requests=1)
    usage = meter.summary()["package"]
    assert usage["app_s"] == 0
    assert usage["db_s"] >= 0.2 - 2 * cpu.TICK_S


def test_report_gathers_the_issues_targets_and_the_cpu_per_request():
    from benchmarks import report

    new_key = {"name": "new key, django view: package / bare", "ratio": {"median": 1.3},
               "target": "≤ 1.25; added ≤ 0.35 ms", "met": False, "goal": "new key, django view",
               "added_s": 0.0004}  # fmt: skip
    cpu_usage = {"bare": {"app_s": 0.001, "db_s": None, "requests": 10},
                 "package added": {"app_s": 0.0005, "db_s": None}}  # fmt: skip
    text = report.markdown({
        "mode": "quick", "date": "2026-12-02", "command": "python -m benchmarks --quick",
        "machine": {"database": "sqlite"},
        "scenarios": {"new_key": {"title": "1. new-key overhead", "rows": [new_key],
                                  "details": {"django": {"cpu": cpu_usage}}}},
    })  # fmt: skip
    targets = text.split("## Targets of issue 10", 1)[1]
    assert (
        "| new key, django view: package / bare | 1.300, +0.40 ms | ≤ 1.25; added ≤ 0.35 ms | **no** |"
        in targets
    )
    assert "| new key, django view | package added | **+500** | – |  |" in text
