"""``@idempotent_function`` on every store (contract sections 6 and 7): the
function door runs on whichever store ``STORE`` names, with no change in the
function."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from idempotency import KeyReusedError, idempotent_function
from tests.testapp.models import Charge

pytestmark = pytest.mark.django_db(transaction=True)

runs: list[str] = []


@idempotent_function(key="order_id")
def charge(order_id: str, amount: int) -> dict[str, Any]:
    runs.append(order_id)
    return {"charge": Charge.objects.create(amount=amount, label=order_id).pk}


def test_a_function_runs_once_and_replays_on_every_store(record_store: Any) -> None:
    runs.clear()
    order = f"order-{uuid.uuid4()}"

    first = charge(order, 5)
    again = charge(order, 5)

    assert again == first
    assert runs == [order]
    assert Charge.objects.filter(label=order).count() == 1


def test_other_arguments_with_the_key_raise_key_reused_on_every_store(record_store: Any) -> None:
    order = f"order-{uuid.uuid4()}"
    charge(order, 5)

    with pytest.raises(KeyReusedError):
        charge(order, 6)
    assert Charge.objects.filter(label=order).count() == 1


def test_a_call_that_raises_leaves_the_key_free_on_every_store(record_store: Any) -> None:
    order = f"order-{uuid.uuid4()}"

    @idempotent_function(key="order_id", scope=f"failing-{uuid.uuid4()}")
    def failing(order_id: str, fail: bool) -> str:
        if fail:
            raise RuntimeError("the call failed")
        return "done"

    with pytest.raises(RuntimeError):
        failing(order, True)
    assert failing(order, False) == "done"  # released: the retry runs
