"""The Celery app of tests/tasks: tasks whose bodies are ``@idempotent_function``.

Workers start it with ``celery -A tests.tasks.celery_app worker``, on the test
database pytest-django created (IDEMPOTENCY_TEST_DB_NAME, as the gunicorn
servers of tests/servers.py). Each task takes ``gate``, a directory through
which the test sees a run start and tells a run when to go on: it waits for a
file, never races a sleep.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

from celery import Celery, shared_task  # noqa: E402

from idempotency import idempotent_function  # noqa: E402
from tests.testapp.models import Charge  # noqa: E402

BROKER_URL = os.environ.get("IDEMPOTENCY_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")

app = Celery("idempotency_tests")
app.conf.update(
    broker_url=BROKER_URL,
    result_backend="rpc://",
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


def _started(gate: Path, order_id: str) -> None:
    (gate / f"{order_id}.started.{os.getpid()}.{time.monotonic_ns()}").touch()


def _held(gate: Path, order_id: str) -> None:
    hold = gate / f"{order_id}.hold"
    while hold.exists():  # the test removes it (or kills this worker)
        time.sleep(0.02)


@app.task(bind=True, max_retries=30)
@idempotent_function(key="order_id", on_in_progress="retry")
def record_payment(self, order_id: str, amount: int, gate: str) -> dict[str, object]:
    _started(Path(gate), order_id)
    row = Charge.objects.create(amount=amount, label=order_id)
    _held(Path(gate), order_id)
    return {"charge": row.pk, "pid": os.getpid(), "task_id": self.request.id}


@app.task(autoretry_for=(ConnectionError,), retry_kwargs={"countdown": 0, "max_retries": 3})
@idempotent_function(key="order_id", on_in_progress="retry")
def flaky_payment(order_id: str, gate: str) -> dict[str, object]:
    attempt = len(list(Path(gate).glob(f"{order_id}.started.*")))
    _started(Path(gate), order_id)
    row = Charge.objects.create(amount=attempt, label=order_id)
    if attempt == 0:
        raise ConnectionError("the payment provider timed out")
    return {"charge": row.pk, "attempt": attempt}


@shared_task(name="tests.tasks.celery_app.shared_receipt", max_retries=30)
@idempotent_function(key="order_id", on_in_progress="retry")
def shared_receipt(order_id: str, gate: str) -> dict[str, object]:
    _started(Path(gate), order_id)
    row = Charge.objects.create(amount=1, label=order_id)
    return {"charge": row.pk, "pid": os.getpid()}


# The recipe of docs/tasks.md ("Task id or business key"): keyed on the
# message, so a redelivery of it runs once and a new publish runs again.
@app.task(bind=True, max_retries=30)
@idempotent_function(
    key=lambda self, *args, **kwargs: self.request.id, scope="tasks:by-id", on_in_progress="retry"
)
def receipt_by_task_id(self, order_id: str, gate: str) -> dict[str, object]:
    _started(Path(gate), order_id)
    row = Charge.objects.create(amount=2, label=order_id)
    _held(Path(gate), order_id)
    return {"charge": row.pk, "task_id": self.request.id}
