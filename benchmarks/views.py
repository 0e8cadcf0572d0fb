"""One create endpoint, served bare and with the package, in three flavours.

The bodies are identical on both sides, so that any difference in time is the
package's: ``@idempotent`` on a plain Django view, ``IdempotencyMixin`` on a
DRF ``CreateAPIView`` like the example project's payments viewset, and the
same DRF view behind ``TokenAuthentication`` and ``IsAuthenticated`` (a
user-realistic endpoint: the token lookup is one more statement per request,
and the record's scope is the user).
"""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from rest_framework import generics, serializers
from rest_framework.authentication import TokenAuthentication
from rest_framework.permissions import IsAuthenticated

from benchmarks.models import Order
from idempotency import idempotent
from idempotency.drf import IdempotencyMixin


def create_order(request: HttpRequest) -> JsonResponse:
    data = json.loads(request.body)
    order = Order.objects.create(
        amount=int(data["amount"]),
        currency=str(data.get("currency", "EUR")),
        description=str(data.get("description", "")),
    )
    return JsonResponse(
        {"id": order.pk, "amount": order.amount, "currency": order.currency,
         "description": order.description, "created_at": order.created_at.isoformat()},
        status=201,
    )  # fmt: skip


bare_view = csrf_exempt(require_POST(create_order))
idempotent_view = csrf_exempt(require_POST(idempotent(create_order)))


@csrf_exempt
@require_POST
def noop_view(request: HttpRequest) -> JsonResponse:
    """For the in-process table-size scenario: only the package touches the database."""
    return JsonResponse({"ok": True}, status=201)


idempotent_noop_view = csrf_exempt(require_POST(idempotent(noop_view.__wrapped__)))


class OrderSerializer(serializers.ModelSerializer[Order]):
    class Meta:
        model = Order
        fields = ["id", "amount", "currency", "description", "created_at"]
        read_only_fields = ["created_at"]


class BareOrderCreate(generics.CreateAPIView[Order]):
    serializer_class = OrderSerializer
    queryset = Order.objects.all()


class IdempotentOrderCreate(IdempotencyMixin, BareOrderCreate):
    pass


class TokenBareOrderCreate(BareOrderCreate):
    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]


class TokenIdempotentOrderCreate(IdempotencyMixin, TokenBareOrderCreate):
    pass
