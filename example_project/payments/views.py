"""Three ways to make a view idempotent, one per view below.

- ``PaymentViewSet``: ``IdempotencyMixin`` covers every unsafe method of a DRF
  viewset (POST, PUT, PATCH, DELETE).
- ``refund_payment``: ``@idempotent`` on a DRF ``@api_view`` function.
- ``receipt_webhook``: ``@idempotent`` on a plain Django view.

Without an ``Idempotency-Key`` header each view runs as if the package were
absent; with one, a retry gets the first response back instead of running again.
"""

from __future__ import annotations

import json

from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from rest_framework import viewsets
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from example_project.payments import processor
from example_project.payments.models import Payment, Receipt, Status
from example_project.payments.serializers import PaymentSerializer
from idempotency import idempotent
from idempotency.drf import IdempotencyMixin


class PaymentViewSet(IdempotencyMixin, viewsets.ModelViewSet):
    """The signed-in user's payments. POST /api/payments/ charges the card.

    The mixin comes first in the bases. It runs after DRF's authentication, so
    each token user's keys are their own (scope ``user:<pk>``).
    """

    serializer_class = PaymentSerializer

    def get_queryset(self) -> QuerySet[Payment]:
        return Payment.objects.filter(owner=self.request.user)

    def perform_create(self, serializer: BaseSerializer[Payment]) -> None:
        data = serializer.validated_data
        reference = processor.charge(data["amount"], data["currency"])
        serializer.save(owner=self.request.user, processor_reference=reference)


# A refund must never run twice. It lives on a plain DRF function view rather
# than as an @action of PaymentViewSet to show the decorator on its own: the
# mixin would already cover an action's POST. @idempotent goes *below*
# @api_view, so that it runs after DRF has authenticated the token user.
@api_view(["POST"])
@idempotent
def refund_payment(request: Request, pk: int) -> Response:
    """POST /api/payments/<pk>/refund/ refunds the payment in full."""
    # One conditional UPDATE marks the payment refunded only if it was not, so
    # that even two refunds sent with different keys cannot both reach the
    # processor; if the processor fails, the transaction undoes the mark.
    with transaction.atomic():
        claimed = Payment.objects.filter(pk=pk, owner=request.user, refunded=False).update(
            refunded=True
        )
        payment = get_object_or_404(Payment, pk=pk, owner=request.user)
        if not claimed:
            return Response({"detail": "This payment is already refunded."}, status=400)
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
    payment.status = Status.SUCCEEDED
    payment.save(update_fields=["status"])
    return JsonResponse({"receipt": receipt.pk, "payment": payment.pk}, status=201)
