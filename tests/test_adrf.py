"""IdempotencyMixin and @idempotent on adrf's async DRF views.

The package protects DRF's synchronous handlers; an async handler of an adrf
view is refused loudly, at class creation for the mixin and at the first
request for the decorator, with the fix in the message. adrf views whose
handlers are plain ``def`` run through adrf's synchronous dispatch and are
protected as any DRF view.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from adrf.views import APIView as AsyncAPIView
from adrf.viewsets import ViewSet as AsyncViewSet
from asgiref.sync import async_to_sync
from django.test import RequestFactory
from rest_framework import permissions
from rest_framework.response import Response

from idempotency import idempotent
from idempotency.drf import IdempotencyMixin
from tests.testapp.models import Charge


def test_the_mixin_on_an_adrf_view_with_an_async_handler_raises_at_class_creation() -> None:
    with pytest.raises(TypeError, match=r"AsyncPay\.post is async.*make it a plain def"):

        class AsyncPay(IdempotencyMixin, AsyncAPIView):
            async def post(self, request: Any) -> Any: ...


def test_the_mixin_on_an_adrf_viewset_with_an_async_action_raises_at_class_creation() -> None:
    with pytest.raises(TypeError, match=r"AsyncPayments\.create is async.*make it a plain def"):

        class AsyncPayments(IdempotencyMixin, AsyncViewSet):
            async def create(self, request: Any) -> Any: ...


@pytest.mark.django_db
def test_the_mixin_on_an_adrf_view_with_plain_handlers_runs_once_and_replays() -> None:
    class Pay(IdempotencyMixin, AsyncAPIView):
        permission_classes = [permissions.AllowAny]

        def post(self, request: Any) -> Any:
            charge = Charge.objects.create(amount=request.data["amount"], label="adrf")
            return Response({"id": charge.pk}, status=201)

    view = Pay.as_view()

    def send() -> Any:
        return view(RequestFactory().post(
            "/adrf/", json.dumps({"amount": 5}), content_type="application/json",
            headers={"Idempotency-Key": "adrf-1"},
        ))  # fmt: skip

    first, second = send(), send()

    assert first.status_code == second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    assert Charge.objects.count() == 1


@pytest.mark.django_db
def test_idempotent_on_an_async_adrf_handler_raises_at_the_first_request() -> None:
    class Pay(AsyncAPIView):
        permission_classes = [permissions.AllowAny]

        @idempotent
        async def post(self, request: Any) -> Any:
            raise AssertionError("the handler must not run unprotected")

    request = RequestFactory().post(
        "/adrf/", "{}", content_type="application/json", headers={"Idempotency-Key": "adrf-2"}
    )

    with pytest.raises(
        TypeError, match="DRF views run synchronously; make the handler a plain def"
    ):
        async_to_sync(Pay.as_view())(request)
    assert Charge.objects.count() == 0
