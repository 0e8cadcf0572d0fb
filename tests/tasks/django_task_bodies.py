"""Django tasks (``django.tasks``, or the ``django-tasks`` backport on Django 5.2)
whose bodies are ``@idempotent_function``; tests/tasks/test_django_tasks.py."""

from __future__ import annotations

try:
    from django.tasks import TaskContext, task  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # Django < 6.0: the backport
    from django_tasks import TaskContext, task

from idempotency import idempotent_function
from tests.testapp.models import Charge


@task()
@idempotent_function(key="order_id")
def send_receipt(order_id: str, amount: int) -> dict[str, object]:
    row = Charge.objects.create(amount=amount, label=order_id)
    return {"charge": row.pk, "order": order_id}


@task(takes_context=True)
@idempotent_function(key="order_id")
def send_receipt_with_context(
    context: TaskContext, order_id: str, amount: int
) -> dict[str, object]:
    row = Charge.objects.create(amount=amount, label=order_id)
    return {"charge": row.pk, "attempt": context.attempt}
