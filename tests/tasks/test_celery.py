"""Celery tasks with ``@idempotent_function`` bodies, run by real prefork workers.

Each test starts its workers (``celery worker``, a subprocess on the test
database, RabbitMQ as the broker, a queue of its own) and stops them by PID.
The figures behind a green run are printed at the end (concurrency tallies).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db import connections
from django.db.models.functions import Now

from idempotency.models import IdempotencyRecord
from tests.concurrency.race import TALLIES
from tests.conftest import TEST_DB
from tests.servers import PROJECT, wait_until
from tests.testapp.models import Charge

BROKER = ("127.0.0.1", 5672)
# Workers take over a dead run's lock after this many seconds.
LOCK_TIMEOUT = 3


def _broker_reachable() -> bool:
    try:
        socket.create_connection(BROKER, timeout=2).close()
    except OSError:
        return False
    return True


if TEST_DB == "sqlite":
    pytestmark = pytest.mark.skip(
        reason="the workers need a database they and the test both see; SQLite's test "
        "database is in memory"
    )
elif not _broker_reachable() and os.environ.get("CI") != "true":
    pytestmark = pytest.mark.skip(reason="RabbitMQ is not reachable on 127.0.0.1:5672")
else:
    pytestmark = pytest.mark.django_db(transaction=True)

from tests.tasks import celery_app  # noqa: E402  (after the skip: it needs Celery)


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """SIGKILL the main process and its pool, as a lost machine dies."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"idempotency-tests-{uuid.uuid4().hex[:12]}"
    yield name
    with celery_app.app.connection_for_write() as connection, contextlib.suppress(Exception):
        connection.default_channel.queue_delete(name)


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def workers(tmp_path: Path, queue: str) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


def start_worker(
    started: list[Worker],
    tmp: Path,
    queue: str,
    concurrency: int = 1,
    lock_timeout: float = LOCK_TIMEOUT,
) -> Worker:
    log = tmp / f"worker-{len(started)}.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "IDEMPOTENCY_TEST_DB": TEST_DB,
        "IDEMPOTENCY_TEST_DB_NAME": connections["default"].settings_dict["NAME"],
        "IDEMPOTENCY_TEST_LOCK_TIMEOUT": str(lock_timeout),
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "tests.tasks.celery_app", "worker",
                "--pool=prefork", f"--concurrency={concurrency}", "-Q", queue,
                "-n", f"w{len(started)}-{queue}@%h", "--without-gossip", "--without-mingle",
                "--without-heartbeat", "--loglevel=INFO",
            ],
            cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    worker = Worker(process, log)
    started.append(worker)

    def ready() -> bool:
        assert process.poll() is None, log.read_text()
        return " ready." in log.read_text()

    wait_until(ready, 60, "the Celery worker is ready")
    return worker


def starts(gate: Path, order_id: str) -> list[Path]:
    return sorted(gate.glob(f"{order_id}.started.*"))


def test_the_same_message_published_twice_runs_once(workers, tmp_path, queue, gate):
    start_worker(workers, tmp_path, queue, concurrency=2)
    order = f"order-{uuid.uuid4().hex[:8]}"
    args = (order, 500, str(gate))

    first = celery_app.record_payment.apply_async(args, queue=queue)
    second = celery_app.record_payment.apply_async(args, queue=queue)  # a new task id
    results = [first.get(timeout=60), second.get(timeout=60)]

    assert first.id != second.id
    assert len(starts(gate, order)) == 1
    [row] = Charge.objects.filter(label=order)
    assert results[0] == results[1]
    assert results[0]["charge"] == row.pk
    retried = workers[0].log.read_text().count("Retry in")
    TALLIES.append(
        f"celery ({TEST_DB}): one message published twice: 1 run, 1 committed row, "
        f"{retried} in-flight retries"
    )


# The killed run's lock outlives the second worker's start, so the redelivered
# copy meets it live and retries in flight before it takes the record over.
KILL_LOCK_TIMEOUT = 10


def test_a_worker_killed_mid_task_is_redelivered_and_commits_exactly_one_row(
    workers, tmp_path, queue, gate
):
    first_worker = start_worker(workers, tmp_path, queue, lock_timeout=KILL_LOCK_TIMEOUT)
    order = f"order-{uuid.uuid4().hex[:8]}"
    args = (order, 700, str(gate))
    (gate / f"{order}.hold").touch()

    result = celery_app.record_payment.apply_async(args, queue=queue)
    wait_until(lambda: starts(gate, order), 60, "the first run starts")
    # Consuming before the kill: the broker redelivers to it at once.
    second_worker = start_worker(workers, tmp_path, queue, lock_timeout=KILL_LOCK_TIMEOUT)
    first_worker.kill()  # mid-task: its row is written, not committed
    killed_at = time.monotonic()
    (gate / f"{order}.hold").unlink()  # lets the redelivered run finish
    value = result.get(timeout=90)
    took = time.monotonic() - killed_at

    assert len(starts(gate, order)) == 2  # the killed run and the redelivered one
    [row] = Charge.objects.filter(label=order)
    assert value["charge"] == row.pk
    assert value["task_id"] == result.id  # the same message, redelivered
    # A later call returns that row's result without running.
    assert celery_app.record_payment(*args) == value
    assert celery_app.record_payment.apply_async(args, queue=queue).get(timeout=60) == value
    assert len(starts(gate, order)) == 2
    assert Charge.objects.filter(label=order).count() == 1
    retried = second_worker.log.read_text().count("Retry in")
    TALLIES.append(
        f"celery ({TEST_DB}): worker SIGKILLed mid-task, acks_late: 2 runs started, "
        f"1 committed row, {retried} in-flight retries on the second worker, result "
        f"{took:.1f}s after the kill (LOCK_TIMEOUT {KILL_LOCK_TIMEOUT}s)"
    )


def test_a_task_that_raises_is_retried_and_then_runs_cleanly(workers, tmp_path, queue, gate):
    start_worker(workers, tmp_path, queue)
    order = f"order-{uuid.uuid4().hex[:8]}"

    value = celery_app.flaky_payment.apply_async((order, str(gate)), queue=queue).get(timeout=60)

    assert len(starts(gate, order)) == 2
    [row] = Charge.objects.filter(label=order)  # the failed attempt's row rolled back
    assert value == {"charge": row.pk, "attempt": 1}
    assert celery_app.flaky_payment(order, str(gate)) == value
    assert len(starts(gate, order)) == 2


# One worker for the tests below, started once: each names its own orders and
# task ids, so they share its queue and its log.


@pytest.fixture(scope="module")
def shared_worker(django_db_setup, tmp_path_factory) -> Iterator[Worker]:
    tmp = tmp_path_factory.mktemp("shared-worker")
    name = f"idempotency-tests-{uuid.uuid4().hex[:12]}"
    started: list[Worker] = []
    try:
        yield start_worker(started, tmp, name, concurrency=2)
    finally:
        for worker in started:
            worker.stop()
        with celery_app.app.connection_for_write() as connection, contextlib.suppress(Exception):
            connection.default_channel.queue_delete(name)


def queue_of(worker: Worker) -> str:
    return worker.process.args[worker.process.args.index("-Q") + 1]  # type: ignore[index, union-attr]


def log_lines(worker: Worker, task_id: str, what: str) -> list[str]:
    return [line for line in worker.log.read_text().splitlines() if f"[{task_id}] {what}" in line]


def returned(line: str) -> str:
    """The return value a worker's "succeeded" log line shows."""
    match = re.search(r"succeeded in [\d.]+s: (.*)$", line)
    assert match, line
    return match[1]


def test_a_shared_task_published_twice_runs_once(shared_worker, gate):
    order = f"order-{uuid.uuid4().hex[:8]}"
    args = (order, str(gate))

    first = celery_app.shared_receipt.apply_async(args, queue=queue_of(shared_worker))
    second = celery_app.shared_receipt.apply_async(args, queue=queue_of(shared_worker))
    results = [first.get(timeout=60), second.get(timeout=60)]

    assert type(celery_app.shared_receipt).__name__ == "Proxy"  # declared by @shared_task
    assert first.id != second.id
    assert len(starts(gate, order)) == 1
    [row] = Charge.objects.filter(label=order)
    assert results == [{"charge": row.pk, "pid": results[0]["pid"]}] * 2


def test_a_task_keyed_on_its_id_runs_once_per_message_and_again_for_a_new_one(shared_worker, gate):
    order = f"order-{uuid.uuid4().hex[:8]}"
    args = (order, str(gate))
    queue = queue_of(shared_worker)
    message = str(uuid.uuid4())

    celery_app.receipt_by_task_id.apply_async(args, queue=queue, task_id=message).get(timeout=60)
    # The same message delivered again, as a broker redelivers it.
    celery_app.receipt_by_task_id.apply_async(args, queue=queue, task_id=message)
    delivered = wait_until(
        lambda: len(found := log_lines(shared_worker, message, "succeeded")) == 2 and found,
        60,
        "the second delivery is answered",
    )
    again = celery_app.receipt_by_task_id.apply_async(args, queue=queue).get(timeout=60)

    assert len(starts(gate, order)) == 2  # the first delivery, and the new publish
    first_row, new_row = Charge.objects.filter(label=order).order_by("pk")
    # Both deliveries of the message answered the first run's value.
    values = {returned(line) for line in delivered}
    assert values == {repr({"charge": first_row.pk, "task_id": message})}
    assert again["charge"] == new_row.pk and again["task_id"] != message


RETRY_LINE = re.compile(r"retry: Retry in (\d+)s: InProgressError\('.*retry after ([\d.]+) s\.'\)")


def lock_remaining(order_path: str) -> float:
    """Seconds left on the in-progress record's lock, by the database's clock."""
    [(locked_until, now)] = (
        IdempotencyRecord.objects.filter(path=order_path, status="in_progress")
        .annotate(now=Now())
        .values_list("locked_until", "now")
    )
    return (locked_until - now).total_seconds()


def test_a_duplicate_that_finds_the_key_held_retries_after_the_locks_remaining_time(
    shared_worker, gate
):
    order = f"order-{uuid.uuid4().hex[:8]}"
    args = (order, str(gate))
    queue = queue_of(shared_worker)
    message = str(uuid.uuid4())
    path = "tests.tasks.celery_app.receipt_by_task_id"
    (gate / f"{order}.hold").touch()

    result = celery_app.receipt_by_task_id.apply_async(args, queue=queue, task_id=message)
    wait_until(lambda: starts(gate, order), 60, "the first run starts")
    before = lock_remaining(path)
    # The message redelivered while its first delivery still runs.
    celery_app.receipt_by_task_id.apply_async(args, queue=queue, task_id=message)
    [line] = wait_until(lambda: log_lines(shared_worker, message, "retry"), 60, "the copy retries")
    after = lock_remaining(path)
    (gate / f"{order}.hold").unlink()
    value = result.get(timeout=60)

    match = RETRY_LINE.search(line)
    assert match, line
    countdown, seconds = int(match[1]), float(match[2])
    # The lock's remaining time when the copy claimed, rounded up.
    assert after - 0.05 <= seconds <= before + 0.05
    assert math.ceil(seconds - 0.05) <= countdown <= math.ceil(seconds + 0.05)
    # The retry, the same message again, replays the first run's value.
    [done] = wait_until(
        lambda: log_lines(shared_worker, message, "succeeded")[1:], 60, "the retry is answered"
    )
    assert returned(done) == repr(value)
    assert len(starts(gate, order)) == 1
    assert Charge.objects.filter(label=order).count() == 1
