"""Four ways to make a view idempotent, one per view below.

- ``PaymentViewSet``: ``IdempotencyMixin`` covers every unsafe method of a DRF
  viewset (POST, PUT, PATCH, DELETE).
- ``refund_payment``: ``@idempotent`` on a DRF ``@api_view`` function.
- ``receipt_webhook``: ``@idempotent`` on a plain Django view.
- ``checkout_pay``: ``@idempotent(token=True)`` on an HTML form's view.

Without an ``Idempotency-Key`` header each view runs as if the package were
absent; with one, a retry gets the first response back instead of running again.

The ``extend_schema`` lines describe the views' own answers for the OpenAPI
schema (/api/schema/); what the package adds to each idempotent operation, the
header and its 400, 409, 422 and 503 answers, comes from the hook in
settings.SPECTACULAR_SETTINGS, with no annotation here.
"""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import viewsets
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from example_project.payments import processor
from example_project.payments.models import Payment, Receipt, Status
from example_project.payments.serializers import DetailSerializer, PaymentSerializer
from idempotency import idempotent
from idempotency.drf import IdempotencyMixin
from idempotency.versioning import transition

NOT_VALID = OpenApiResponse(
    OpenApiTypes.OBJECT, description="The body is not valid: each field's errors, or `detail`."
)
NOT_FOUND = OpenApiResponse(DetailSerializer, description="You have no payment with this id.")


@extend_schema_view(
    create=extend_schema(responses={201: PaymentSerializer, 400: NOT_VALID}),
    retrieve=extend_schema(responses={200: PaymentSerializer, 404: NOT_FOUND}),
    update=extend_schema(responses={200: PaymentSerializer, 400: NOT_VALID, 404: NOT_FOUND}),
    partial_update=extend_schema(
        responses={200: PaymentSerializer, 400: NOT_VALID, 404: NOT_FOUND}
    ),
    destroy=extend_schema(responses={204: None, 404: NOT_FOUND}),
)
class PaymentViewSet(IdempotencyMixin, viewsets.ModelViewSet):
    """The signed-in user's payments. POST /api/payments/ charges the card.

    The mixin comes first in the bases. It runs after DRF's authentication, so
    each token user's keys are their own (scope ``user:<pk>``).
    """

    serializer_class = PaymentSerializer

    def get_queryset(self) -> QuerySet[Payment]:
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular, with no user
            return Payment.objects.none()
        return Payment.objects.filter(owner=self.request.user)

    def perform_create(self, serializer: BaseSerializer[Payment]) -> None:
        data = serializer.validated_data
        reference = processor.charge(data["amount"], data["currency"])
        serializer.save(owner=self.request.user, processor_reference=reference)


# A refund must never run twice. It lives on a plain DRF function view rather
# than as an @action of PaymentViewSet to show the decorator on its own: the
# mixin would already cover an action's POST. @idempotent goes *below*
# @api_view, so that it runs after DRF has authenticated the token user.
@extend_schema(
    # <int:pk> matches digits only: no negative id reaches the view.
    parameters=[OpenApiParameter("id", {"type": "integer", "minimum": 0}, OpenApiParameter.PATH)],
    request=None,
    responses={
        200: PaymentSerializer,
        400: OpenApiResponse(DetailSerializer, description="The payment is not paid, or refunded."),
        404: NOT_FOUND,
    },
)
@api_view(["POST"])
@idempotent
def refund_payment(request: Request, pk: int) -> Response:
    """POST /api/payments/<pk>/refund/ refunds a paid payment in full."""
    # The refund is a transition out of the paid state: one conditional UPDATE
    # moves the payment from succeeded to refunded only if it is still paid and
    # still at the version read here, so that even two refunds sent with
    # different keys cannot both reach the processor. If the processor fails,
    # the transaction undoes the move. If the payment changed since it was
    # read, StaleObjectError is answered 409 and the key released: retry it.
    with transaction.atomic():
        payment = get_object_or_404(Payment, pk=pk, owner=request.user)
        if not transition(payment, "status", Status.SUCCEEDED, Status.REFUNDED):
            # Out of succeeded the only way is refunded, so a payment read as
            # paid that lost the transition was refunded by another request.
            if payment.status == Status.PENDING:
                detail = "This payment is not paid yet; only a paid payment can be refunded."
            else:
                detail = "This payment is already refunded."
            return Response({"detail": detail}, status=400)
        processor.refund(payment.processor_reference)
    return Response(PaymentSerializer(payment).data)


# Card processors deliver webhooks at least once and resend them with the same
# event id, which they put in the Idempotency-Key header. The caller is not a
# signed-in user, so every call shares the scope "anonymous"; a real webhook
# would check the processor's signature in a decorator above @idempotent, so
# that unsigned calls never reach the record store.
@csrf_exempt
@require_POST
@idempotent
def receipt_webhook(request: HttpRequest) -> JsonResponse:
    """POST /webhooks/receipt/ {"processor_reference": "ch_..."} settles a payment."""
    try:
        reference = json.loads(request.body)["processor_reference"]
    except (ValueError, TypeError, KeyError):
        return JsonResponse({"detail": 'Send {"processor_reference": "ch_..."}.'}, status=400)
    payment = get_object_or_404(Payment, processor_reference=reference)
    receipt = Receipt.objects.create(payment=payment, processor_reference=reference)
    # Only a pending payment becomes paid: a late receipt must not undo a refund.
    transition(payment, "status", Status.PENDING, Status.SUCCEEDED)
    return JsonResponse({"receipt": receipt.pk, "payment": payment.pk}, status=201)


# An HTML checkout, for browsers: a form has no Idempotency-Key header, so the
# page carries a one-time token ({% idempotency_token %}) and the view takes
# its key from that field. A double-clicked "Pay" sends the same token twice:
# the second submit waits for the first and gets its redirect, so the user
# pays once and lands on one success page.
@never_cache  # the page carries a token: no cache may keep it (docs/forms.md)
@login_required(login_url="/admin/login/")
def checkout(request: HttpRequest) -> HttpResponse:
    """GET /checkout/: the payment form."""
    return render(request, "payments/checkout.html")


@require_POST
@login_required(login_url="/admin/login/")
@idempotent(token=True)
def checkout_pay(request: HttpRequest) -> HttpResponse:
    """POST /checkout/pay/: charges the card once per form, then redirects."""
    try:
        amount = int(request.POST["amount"])
    except (KeyError, ValueError):
        return HttpResponse("Enter an amount in cents.", status=400)
    reference = processor.charge(amount, "EUR")
    payment = Payment.objects.create(
        owner=request.user,
        amount=amount,
        description=request.POST.get("description", "")[:200],
        processor_reference=reference,
    )
    return redirect("checkout-paid", pk=payment.pk)


@login_required(login_url="/admin/login/")
def checkout_paid(request: HttpRequest, pk: int) -> HttpResponse:
    """GET /checkout/paid/<pk>/: the success page."""
    payment = get_object_or_404(Payment, pk=pk, owner=request.user)
    return render(request, "payments/paid.html", {"payment": payment})
