"""Async views for tests/uvicorn and the AsyncClient tests: a function view
and a class-based view doing the same work, as the request body asks:
``{"amount": 5, "status": 201, "fail": true, "sleep": 0.4, "gate": "name"}``.

``gate`` holds the view open across processes: the view writes
``<IDEMPOTENCY_TEST_GATE_DIR>/<name>.entered`` and waits, on the event loop,
until the test creates ``<name>.open``.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View

from idempotency import idempotent
from tests.testapp.models import Charge

GATE_DIR = "IDEMPOTENCY_TEST_GATE_DIR"


class AsyncViewFailed(Exception):
    pass


async def pass_gate(name: str) -> None:
    gates = Path(os.environ[GATE_DIR])
    (gates / f"{name}.entered").write_text(str(os.getpid()))
    for _ in range(6000):  # 60 s: a test that never opens the gate fails
        if (gates / f"{name}.open").exists():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"the test never opened gate {name!r}")


async def charge(request: HttpRequest, label: str) -> HttpResponse:
    options: dict[str, Any] = json.loads(request.body or b"{}")
    if options.get("gate"):
        await pass_gate(str(options["gate"]))
    if options.get("sleep"):
        await asyncio.sleep(float(options["sleep"]))
    created = await Charge.objects.acreate(amount=int(options.get("amount") or 0), label=label)
    if options.get("fail"):
        raise AsyncViewFailed("the async view raised")
    response = JsonResponse(
        {"id": created.pk, "amount": created.amount}, status=int(options.get("status") or 201)
    )
    response["Location"] = f"/charges/{created.pk}"
    return response


@idempotent
async def async_charge_view(request: HttpRequest) -> HttpResponse:
    return await charge(request, "async function")


@method_decorator(idempotent, name="post")
class AsyncChargeView(View):
    async def post(self, request: HttpRequest) -> HttpResponse:
        return await charge(request, "async class")


@idempotent(required=True)
async def async_required_view(request: HttpRequest) -> HttpResponse:
    return await charge(request, "async required")


@idempotent(wait=30)
async def async_waiting_view(request: HttpRequest) -> HttpResponse:
    """A duplicate waits up to 30 s for the first request, then replays."""
    return await charge(request, "async waiting")


@idempotent(wait=0.3)
async def async_short_wait_view(request: HttpRequest) -> HttpResponse:
    """A duplicate waits 0.3 s: a first request held at its gate outlasts it."""
    return await charge(request, "async short wait")


async def orm_on_the_event_loop_view(request: HttpRequest) -> HttpResponse:
    """The mistake the package must never make, for the log check to catch:
    Django raises SynchronousOnlyOperation."""
    return JsonResponse({"charges": Charge.objects.count()})
