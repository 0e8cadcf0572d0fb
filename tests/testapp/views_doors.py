"""Views for the hardening tests: every way of attaching the package, and the
Django and DRF features a view may use (durable transactions, set_rollback,
gzip, its own exception handler, principals that are not users, async)."""

from __future__ import annotations

import json
import threading
from typing import Any

from django.contrib.auth.models import AnonymousUser, Group
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.gzip import gzip_page
from rest_framework import permissions, views, viewsets
from rest_framework.authentication import (
    BaseAuthentication,
    SessionAuthentication,
    TokenAuthentication,
)
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.response import Response
from rest_framework.views import APIView

from idempotency import idempotent
from idempotency.drf import IdempotencyMixin
from tests.testapp.models import Charge
from tests.testapp.views import perform, tenant_scope

# Attaching the decorator to a DRF view's dispatch (contract section 3, Scope)


@method_decorator(idempotent, name="dispatch")
class DispatchDecoratedAPIView(APIView):
    permission_classes = [permissions.AllowAny]

    def post(self, request: Any) -> Any:
        return perform(request, drf=True)


class DispatchInClassBodyAPIView(APIView):
    permission_classes = [permissions.AllowAny]

    @idempotent
    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return super().dispatch(request, *args, **kwargs)

    def post(self, request: Any) -> Any:
        return perform(request, drf=True)


@method_decorator(idempotent, name="dispatch")
class MixinAndDispatchDecoratedAPIView(IdempotencyMixin, APIView):
    """Both ways at once: protected once, not twice (a second claim of the
    same key would answer the first request with its own 409)."""

    permission_classes = [permissions.AllowAny]

    def post(self, request: Any) -> Any:
        return perform(request, drf=True)


@method_decorator(idempotent, name="dispatch")
class DispatchDecoratedViewSet(viewsets.ViewSet):
    permission_classes = [permissions.AllowAny]

    def create(self, request: Any) -> Any:
        return perform(request, drf=True)


# Transactions the view handles itself


@idempotent
def durable_view(request: HttpRequest) -> HttpResponse:
    with transaction.atomic(durable=True):
        return perform(request)  # type: ignore[no-any-return]


class DurableMixinView(IdempotencyMixin, APIView):
    permission_classes = [permissions.AllowAny]

    def post(self, request: Any) -> Any:
        with transaction.atomic(durable=True):
            return perform(request, drf=True)


@idempotent
def durable_lookalike_view(request: HttpRequest) -> HttpResponse:
    Charge.objects.create(amount=1, label="lookalike")
    # Django's words, raised by the view itself: not a refused durable block.
    raise RuntimeError("A durable atomic block cannot be nested within another atomic block.")


@idempotent(atomic=False)
def owns_its_transaction_view(request: HttpRequest) -> HttpResponse:
    with transaction.atomic(durable=True):
        return perform(request)  # type: ignore[no-any-return]


@idempotent
def rolls_back_view(request: HttpRequest) -> HttpResponse:
    Charge.objects.create(amount=1, label="rolled back")
    transaction.set_rollback(True)
    return JsonResponse({"error": "refused after writing"}, status=400)


# Encodings and representations


@idempotent
@gzip_page
def gzipped_view(request: HttpRequest) -> HttpResponse:
    charge = Charge.objects.create(amount=1, label="gzip")
    return JsonResponse({"id": charge.pk, "padding": "x" * 2000}, status=201)


class CsvOrJson(APIView):
    """A DRF view whose representation follows the Accept header."""

    permission_classes = [permissions.AllowAny]

    @idempotent
    def post(self, request: Any) -> Any:
        charge = Charge.objects.create(amount=1, label="negotiated")
        if request.accepted_renderer.format == "csv":
            return HttpResponse(f"id\n{charge.pk}\n", content_type="text/csv", status=201)
        return Response({"id": charge.pk}, status=201)

    def get_renderers(self) -> list[Any]:
        from rest_framework.renderers import BaseRenderer, JSONRenderer

        class CsvRenderer(BaseRenderer):
            media_type = "text/csv"
            format = "csv"

        return [JSONRenderer(), CsvRenderer()]


def standardized_errors(exc: Exception, context: dict[str, Any]) -> Response | None:
    """A project's own error format, as drf-standardized-errors gives one."""
    response = views.exception_handler(exc, context)
    if response is None:
        return None
    code = getattr(exc, "get_codes", lambda: None)()
    response.data = {"type": "client_error", "errors": [{"code": code, "detail": str(exc)}]}
    return response


class OwnErrorFormatViewSet(IdempotencyMixin, viewsets.ViewSet):
    permission_classes = [permissions.AllowAny]

    def get_exception_handler(self) -> Any:
        return standardized_errors

    def create(self, request: Any) -> Any:
        return perform(request, drf=True)


class ValidatingViewSet(IdempotencyMixin, viewsets.ViewSet):
    permission_classes = [permissions.AllowAny]

    def create(self, request: Any) -> Any:
        from rest_framework import serializers

        class Amount(serializers.Serializer[Any]):
            amount = serializers.IntegerField(min_value=1)

        Charge.objects.create(amount=0, label="before validation")
        Amount(data=request.data).is_valid(raise_exception=True)
        return perform(request, drf=True)


# Principals that are not the project's users


class ApiKeyAuthentication(BaseAuthentication):
    """``X-Api-Key``: a bare credential in request.auth, no user."""

    def authenticate(self, request: Any) -> tuple[Any, Any] | None:
        key = request.headers.get("X-Api-Key")
        return (None, key) if key else None


class DeviceAuthentication(BaseAuthentication):
    """``X-Device: <pk>``: a principal model that is not the user model, as
    request.auth (``auth``) or as request.user (``user``)."""

    def authenticate(self, request: Any) -> tuple[Any, Any] | None:
        pk = request.headers.get("X-Device")
        if not pk:
            return None
        device = Group.objects.get(pk=int(pk))
        if request.headers.get("X-Device-As") == "user":
            device.is_authenticated = True  # type: ignore[attr-defined]
            return (device, None)
        return (AnonymousUser(), device)


class OpaqueAuthentication(BaseAuthentication):
    """A credential the default scope cannot name (a dict of claims)."""

    def authenticate(self, request: Any) -> tuple[Any, Any] | None:
        return (None, {"client": "x"}) if request.headers.get("X-Opaque") else None


PRINCIPAL_AUTHENTICATION = [
    SessionAuthentication,
    TokenAuthentication,
    ApiKeyAuthentication,
    DeviceAuthentication,
    OpaqueAuthentication,
]


@api_view(["POST"])
@authentication_classes(PRINCIPAL_AUTHENTICATION)
@permission_classes([permissions.AllowAny])
@idempotent
def principal_view(request: Any) -> Any:
    return perform(request, drf=True)


@api_view(["POST"])
@authentication_classes(PRINCIPAL_AUTHENTICATION)
@permission_classes([permissions.AllowAny])
@idempotent(scope=tenant_scope)
def principal_tenant_view(request: Any) -> Any:
    """Every caller of tenant ``X-Tenant`` in one scope, wider than each principal."""
    return perform(request, drf=True)


# Async


@idempotent
async def async_view(request: HttpRequest) -> HttpResponse:
    body = json.loads(request.body or b"{}")
    charge = await Charge.objects.acreate(amount=int(body.get("amount", 0)), label="async")
    return JsonResponse(
        {"id": charge.pk, "amount": charge.amount}, status=int(body.get("status", 201))
    )


@method_decorator(idempotent, name="post")
class AsyncClassView(View):
    async def post(self, request: HttpRequest) -> HttpResponse:
        charge = await Charge.objects.acreate(amount=1, label="async class")
        return JsonResponse({"id": charge.pk}, status=201)


@idempotent(sensitive=True)
def sensitive_view(request: HttpRequest) -> HttpResponse:
    charge = Charge.objects.create(amount=1, label="secret")
    response = JsonResponse({"id": charge.pk, "api_key": f"sk_live_{charge.pk:08d}"}, status=201)
    response["Location"] = f"/keys/{charge.pk}?token=secret-{charge.pk}"
    return response


# A first request held open while the test looks at its duplicates
# (tests/concurrency/test_waiting_duplicates.py).
GATE_ENTERED = threading.Event()
GATE = threading.Event()


@idempotent(scope=tenant_scope)
def gated_view(request: HttpRequest) -> HttpResponse:
    GATE_ENTERED.set()
    if not GATE.wait(60):
        raise TimeoutError("the test never opened the gate")
    charge = Charge.objects.create(amount=1, label="gated")
    return JsonResponse({"id": charge.pk}, status=201)


WAITING_RUNS: list[str] = []


@idempotent(wait=30)
def gated_waiting_view(request: HttpRequest) -> HttpResponse:
    """Its duplicates wait up to 30 s, far longer than the tests' LOCK_TIMEOUT."""
    WAITING_RUNS.append("ran")
    GATE_ENTERED.set()
    if not GATE.wait(60):
        raise TimeoutError("the test never opened the gate")
    charge = Charge.objects.create(amount=1, label="gated-waiting")
    return JsonResponse({"id": charge.pk}, status=201)


# Forms with one-time tokens (tests/test_tokens.py)

FORM_PAGE = """{% load idempotency %}<form method="post">{% csrf_token %}
{% idempotency_token %}<input name="amount" value="5"><button>Pay</button></form>"""


def form_page_view(request: HttpRequest) -> HttpResponse:
    from django.template import engines

    template = engines["django"].from_string(FORM_PAGE)
    return HttpResponse(template.render({}, request))


@idempotent(token=True)
def pay_view(request: HttpRequest) -> HttpResponse:
    from django.shortcuts import redirect

    charge = Charge.objects.create(amount=int(request.POST.get("amount") or 0), label="form")
    return redirect(f"/paid/{charge.pk}/", permanent=False)


def paid_view(request: HttpRequest, pk: int) -> HttpResponse:
    return HttpResponse(f"Paid: charge {pk}")


@idempotent
def form_key_view(request: HttpRequest) -> HttpResponse:
    """Not a token view: any key, from the header or the form field."""
    charge = Charge.objects.create(amount=1, label="form key")
    return JsonResponse({"id": charge.pk}, status=201)


class TokenPayViewSet(IdempotencyMixin, viewsets.ViewSet):
    idempotency_token = True
    permission_classes = [permissions.IsAuthenticated]

    def create(self, request: Any) -> Any:
        return perform(request, drf=True)


@method_decorator(idempotent, name="dispatch")
class AsyncDispatchView(View):
    async def post(self, request: HttpRequest) -> HttpResponse:
        charge = await Charge.objects.acreate(amount=1, label="async dispatch")
        return JsonResponse({"id": charge.pk}, status=201)


@idempotent(sensitive=True)
def sensitive_stream_view(request: HttpRequest) -> HttpResponse:
    from django.http import StreamingHttpResponse

    Charge.objects.create(amount=1, label="secret stream")
    response = StreamingHttpResponse(iter([b"secret"]), status=201)
    response["Location"] = "/keys/1?token=secret-in-a-header"
    return response


PAY_ENTERED = threading.Event()


@idempotent(token=True)
def slow_pay_view(request: HttpRequest) -> HttpResponse:
    """A checkout slow enough for a second click to arrive while it runs."""
    import time

    from django.shortcuts import redirect

    PAY_ENTERED.set()
    time.sleep(1.0)
    charge = Charge.objects.create(amount=int(request.POST.get("amount") or 0), label="checkout")
    return redirect(f"/paid/{charge.pk}/", permanent=False)


SLOW_FORM_PAGE = """{% load idempotency %}<form method="post" action="/slow-pay/">
{% idempotency_token %}<input name="amount" value="5"><button id="pay">Pay</button></form>"""


def slow_form_page_view(request: HttpRequest) -> HttpResponse:
    from django.template import engines

    return HttpResponse(engines["django"].from_string(SLOW_FORM_PAGE).render({}, request))
