"""Views for the tests: one per entry point, all doing the same work.

``perform`` writes a Charge (so tests can count executions) and answers as the
request body asks: ``{"amount": 5, "status": 201, "sleep": 0.5, "fail": true,
"kind": "json" | "csv" | "stream" | "file" | "big" | "binary"}``.
"""

from __future__ import annotations

import io
import json
import time
from typing import Any

from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils.decorators import method_decorator
from django.views import View
from rest_framework import permissions, viewsets
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.response import Response
from rest_framework.views import APIView

from idempotency import idempotent
from idempotency.drf import IdempotencyMixin
from tests.testapp.models import Charge


class ViewFailed(Exception):
    pass


def _options(request: Any) -> dict[str, Any]:
    django_request = getattr(request, "_request", request)
    if django_request.content_type == "application/json" and django_request.body:
        return dict(json.loads(django_request.body))
    return {key: django_request.POST.get(key) for key in django_request.POST}


def perform(request: Any, drf: bool = False) -> Any:
    options = _options(request)
    if options.get("sleep"):
        time.sleep(float(options["sleep"]))
    charge = Charge.objects.create(amount=int(options.get("amount") or 0), label=request.method)
    if options.get("fail"):
        raise ViewFailed("the view raised")
    status = int(options.get("status") or 201)
    kind = options.get("kind") or "json"
    if kind == "csv":
        response: Any = HttpResponse(
            f"id,amount\n{charge.pk},{charge.amount}\n", content_type="text/csv", status=status
        )
        response["Content-Disposition"] = 'attachment; filename="charge.csv"'
    elif kind == "binary":
        response = HttpResponse(
            bytes(range(256)) * 4, content_type="application/octet-stream", status=status
        )
    elif kind == "stream":
        response = StreamingHttpResponse((f"chunk{i}\n" for i in range(3)), status=status)
    elif kind == "file":
        response = FileResponse(io.BytesIO(b"file-bytes"), filename="f.bin")
    elif kind == "big":
        response = HttpResponse(b"x" * int(options.get("size") or 2 * 1024 * 1024), status=status)
    else:
        body = {"id": charge.pk, "amount": charge.amount}
        response = Response(body, status=status) if drf else JsonResponse(body, status=status)
    response["Location"] = f"/charges/{charge.pk}"
    response["X-Not-Replayed"] = "yes"
    if not drf or kind != "json":
        response.set_cookie("session-ish", "secret")
    return response


@idempotent
def plain_view(request: HttpRequest) -> HttpResponse:
    return perform(request)  # type: ignore[no-any-return]


@idempotent(required=True)
def plain_required_view(request: HttpRequest) -> HttpResponse:
    return perform(request)  # type: ignore[no-any-return]


@api_view(["GET", "POST", "PUT", "PATCH", "DELETE"])
@permission_classes([permissions.AllowAny])
@idempotent
def api_function_view(request: Any) -> Any:
    if request.method == "GET":
        return Response({"charges": Charge.objects.count()})
    return perform(request, drf=True)


@api_view(["POST"])
@permission_classes([permissions.IsAuthenticated])
@idempotent
def api_authenticated_view(request: Any) -> Any:
    return perform(request, drf=True)


class ChargeAPIView(APIView):
    permission_classes = [permissions.AllowAny]

    @idempotent
    def post(self, request: Any) -> Any:
        return perform(request, drf=True)


class ChargeViewSet(IdempotencyMixin, viewsets.ViewSet):
    permission_classes = [permissions.AllowAny]

    def list(self, request: Any) -> Any:
        return Response({"charges": Charge.objects.count()})

    def create(self, request: Any) -> Any:
        return perform(request, drf=True)

    def update(self, request: Any, pk: str | None = None) -> Any:
        return perform(request, drf=True)

    def partial_update(self, request: Any, pk: str | None = None) -> Any:
        return perform(request, drf=True)

    def destroy(self, request: Any, pk: str | None = None) -> Any:
        return perform(request, drf=True)

    @action(detail=True, methods=["post"])
    def refund(self, request: Any, pk: str | None = None) -> Any:
        return perform(request, drf=True)


class AuthenticatedViewSet(IdempotencyMixin, viewsets.ViewSet):
    permission_classes = [permissions.IsAuthenticated]

    def create(self, request: Any) -> Any:
        return perform(request, drf=True)


class ActionViewSet(viewsets.ViewSet):
    """An @action decorated directly, without the mixin."""

    permission_classes = [permissions.AllowAny]

    @action(detail=False, methods=["post"])
    @idempotent
    def refund(self, request: Any) -> Any:
        return perform(request, drf=True)


@method_decorator(idempotent, name="post")
class PlainClassView(View):
    def post(self, request: HttpRequest) -> HttpResponse:
        return perform(request)  # type: ignore[no-any-return]
