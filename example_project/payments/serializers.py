from __future__ import annotations

from rest_framework import serializers

from example_project.payments.models import Currency, Payment


class PaymentSerializer(serializers.ModelSerializer):
    # Explicit, so that validated_data always holds a currency for the processor.
    currency = serializers.ChoiceField(choices=Currency.choices, default=Currency.EUR)
    refunded = serializers.BooleanField(read_only=True)  # Payment.refunded, from the status

    class Meta:
        model = Payment
        fields = [
            "id",
            "amount",
            "currency",
            "description",
            "status",
            "processor_reference",
            "refunded",
            "created_at",
        ]
        read_only_fields = ["status", "processor_reference", "created_at"]

    def validate_amount(self, value: int) -> int:
        if value < 1:
            raise serializers.ValidationError("Charge at least 1 cent.")
        return value


class DetailSerializer(serializers.Serializer[object]):
    """DRF's error body: ``{"detail": "..."}``."""

    detail = serializers.CharField()
