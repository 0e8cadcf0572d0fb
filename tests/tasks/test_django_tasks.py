"""``@idempotent_function`` under Django's ``@task``: on the immediate backend,
and on the database backend of django-tasks-db run by a real ``db_worker``.

``django.tasks`` exists from Django 6.0; on older Django the ``django-tasks``
backport provides the same API. Without either, reported as skipped.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from django.db import connections

from idempotency.models import IdempotencyRecord
from tests.conftest import TEST_DB
from tests.servers import PROJECT
from tests.testapp.models import Charge

HAS_TASKS = any(
    importlib.util.find_spec(name) is not None for name in ("django.tasks", "django_tasks")
)
pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        not HAS_TASKS,
        reason="neither django.tasks (Django 6.0+) nor the django-tasks backport is installed",
    ),
]


@pytest.fixture
def bodies():
    from tests.tasks import django_task_bodies

    return django_task_bodies


def test_enqueueing_the_same_order_twice_runs_the_body_once(bodies):
    assert type(bodies.send_receipt.get_backend()).__name__ == "ImmediateBackend"

    first = bodies.send_receipt.enqueue("order-1", 500)
    second = bodies.send_receipt.enqueue("order-1", 500)

    [row] = Charge.objects.filter(label="order-1")
    assert first.status == second.status == "SUCCESSFUL"
    assert first.id != second.id
    assert first.return_value == second.return_value == {"charge": row.pk, "order": "order-1"}
    assert IdempotencyRecord.objects.filter(scope="functions").count() == 1


def test_the_same_order_with_another_amount_fails_the_task_and_runs_nothing(bodies):
    bodies.send_receipt.enqueue("order-2", 500)

    reused = bodies.send_receipt.enqueue("order-2", 900)

    assert reused.status == "FAILED"
    assert reused.errors[0].exception_class_path == "idempotency.functions.KeyReusedError"
    assert Charge.objects.filter(label="order-2").count() == 1


def test_a_task_context_is_left_out_of_the_fingerprint(bodies):
    first = bodies.send_receipt_with_context.enqueue("order-3", 500)
    second = bodies.send_receipt_with_context.enqueue("order-3", 500)

    assert first.status == second.status == "SUCCESSFUL"
    assert first.return_value == second.return_value
    assert Charge.objects.filter(label="order-3").count() == 1


HAS_DB_WORKER = importlib.util.find_spec("django_tasks_db") is not None


@pytest.mark.skipif(not HAS_DB_WORKER, reason="django-tasks-db is not installed")
@pytest.mark.skipif(
    TEST_DB == "sqlite",
    reason="the worker needs a database it and the test both see; SQLite's test database "
    "is in memory",
)
@pytest.mark.django_db(transaction=True)
def test_a_db_worker_runs_the_same_order_enqueued_twice_once(bodies):
    on_database = bodies.send_receipt.using(backend="database")
    first = on_database.enqueue("order-db", 500)
    second = on_database.enqueue("order-db", 500)

    # A real worker process: it runs every queued task, then exits.
    worker = subprocess.run(
        [sys.executable, "-m", "django", "db_worker", "--backend", "database", "--batch",
         "--no-startup-delay", "--queue-name", "*"],
        cwd=PROJECT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
             "IDEMPOTENCY_TEST_DB": TEST_DB,
             "IDEMPOTENCY_TEST_DB_NAME": connections["default"].settings_dict["NAME"]},
    )  # fmt: skip
    first.refresh()
    second.refresh()

    assert worker.returncode == 0, worker.stderr
    [row] = Charge.objects.filter(label="order-db")
    assert first.status == second.status == "SUCCESSFUL", worker.stderr
    assert first.return_value == second.return_value == {"charge": row.pk, "order": "order-db"}
