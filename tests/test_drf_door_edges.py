"""Edges of the DRF door: paths into APIView.dispatch that skip the mixin's
dispatch, project mixins listed before ours, and adrf's async handlers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from adrf.views import APIView as AsyncAPIView
from asgiref.sync import async_to_sync
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.test import Client, RequestFactory
from django.urls import path
from django.utils.decorators import method_decorator
from django.views import View
from rest_framework import permissions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from idempotency import idempotent
from idempotency.drf import IdempotencyMixin
from tests.testapp.models import Charge

pytestmark = pytest.mark.django_db

runs: list[str] = []


@pytest.fixture(autouse=True)
def fresh_runs() -> None:
    runs.clear()


class Pay(IdempotencyMixin, APIView):
    permission_classes = [permissions.AllowAny]

    def post(self, request: Request) -> Response:
        charge = Charge.objects.create(amount=request.data["amount"], label="drf-edge")
        runs.append("post")
        return Response({"id": charge.pk}, status=201)


class DirectDispatch(Pay):
    """Skips the mixin's dispatch: calls APIView's by name, not super()."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        return APIView.dispatch(self, request, *args, **kwargs)


class ReadsDataFirst(DirectDispatch):
    """Reads request.data before the mixin's initial() arms the handler: DRF's
    parser has consumed the body stream, so request.body is gone."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        request.data  # noqa: B018
        super().initial(request, *args, **kwargs)


class ReadsStream(DirectDispatch):
    """Reads the body as a stream before DRF: nobody can parse it any more."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        request.read()
        return super().dispatch(request, *args, **kwargs)


urlpatterns = [
    path("direct/", DirectDispatch.as_view()),
    path("reads-data/", ReadsDataFirst.as_view()),
    path("reads-stream/", ReadsStream.as_view()),
]


def post(client: Client, url: str, amount: int, key: str) -> Any:
    return client.post(url, json.dumps({"amount": amount}), content_type="application/json",
                       headers={"Idempotency-Key": key})  # fmt: skip


# ----------------------------- 1. a dispatch that skips the mixin's


@pytest.mark.urls(__name__)
def test_a_subclass_calling_apiview_dispatch_directly_runs_once_and_replays() -> None:
    client = Client()

    first, second = post(client, "/direct/", 5, "direct-1"), post(client, "/direct/", 5, "direct-1")

    assert first.status_code == second.status_code == 201, second.content[:300]
    assert second["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    assert runs == ["post"]
    assert Charge.objects.count() == 1


@pytest.mark.urls(__name__)
def test_arming_after_drf_parsed_the_body_still_fingerprints_it() -> None:
    client = Client()

    first = post(client, "/reads-data/", 5, "late-1")
    replay = post(client, "/reads-data/", 5, "late-1")
    other = post(client, "/reads-data/", 6, "late-1")

    assert first.status_code == replay.status_code == 201, replay.content[:300]
    assert replay["Idempotent-Replayed"] == "true"
    assert other.status_code == 422, other.content[:300]  # another body, the same key
    assert runs == ["post"]


@pytest.mark.urls(__name__)
def test_a_body_gone_before_the_late_arming_is_refused_not_run_unfingerprinted() -> None:
    response = Client(raise_request_exception=False).post(
        "/reads-stream/", json.dumps({"amount": 5}), content_type="application/json",
        headers={"Idempotency-Key": "gone-1"},
    )  # fmt: skip

    assert response.status_code == 500, response.content[:300]
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["type"].endswith("misconfigured"), response.json()
    assert runs == []
    assert Charge.objects.count() == 0


# ----------------------------- 2. the class-creation check


def test_the_mixin_after_apiview_in_the_bases_still_raises_with_the_fix() -> None:
    with pytest.raises(
        TypeError,
        match=r"Reversed lists IdempotencyMixin after APIView.*put the mixin first, class Reversed\(IdempotencyMixin, "
        r"APIView, \.\.\.\)",
    ):

        class Reversed(APIView, IdempotencyMixin):
            def post(self, request: Request) -> Response: ...


def test_the_mixin_after_a_django_view_in_the_bases_still_raises() -> None:
    with pytest.raises(
        TypeError, match=r"put the mixin first, class Plain\(IdempotencyMixin, View"
    ):

        class Plain(View, IdempotencyMixin):
            def post(self, request: HttpRequest) -> HttpResponseBase: ...


def test_a_project_mixin_whose_dispatch_calls_super_before_ours_is_accepted_and_protected() -> None:
    class LoggingMixin:
        def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            runs.append("logged")
            return super().dispatch(request, *args, **kwargs)  # type: ignore[misc, no-any-return]

    class Logged(LoggingMixin, IdempotencyMixin, APIView):
        permission_classes = [permissions.AllowAny]

        def post(self, request: Request) -> Response:
            runs.append("post")
            return Response({"amount": request.data["amount"]}, status=201)

    view = Logged.as_view()

    def send() -> Any:
        return view(RequestFactory().post(
            "/logged/", json.dumps({"amount": 5}), content_type="application/json",
            headers={"Idempotency-Key": "logged-1"},
        ))  # fmt: skip

    first, second = send(), send()

    assert first.status_code == second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert runs == ["logged", "post", "logged"]


# ----------------------------- 3. adrf's async handlers


@method_decorator(idempotent, name="dispatch")
class AsyncPay(AsyncAPIView):
    permission_classes = [permissions.AllowAny]

    async def get(self, request: Request) -> Response:
        runs.append("get")
        return Response({})

    async def post(self, request: Request) -> Response:
        runs.append("post")
        return Response({}, status=201)


@pytest.mark.parametrize("method", ["post", "get"])
def test_idempotent_on_the_dispatch_of_an_async_adrf_view_raises_at_the_first_request(
    method: str,
) -> None:
    request = getattr(RequestFactory(), method)(
        "/adrf/", content_type="application/json", headers={"Idempotency-Key": "adrf-d-1"}
    )

    with pytest.raises(
        TypeError, match=r"AsyncPay\.get is async.*make it a plain def, or use @idempotent"
    ):
        async_to_sync(AsyncPay.as_view())(request)
    assert runs == []
