from __future__ import annotations

from django.contrib import admin

from example_project.payments.models import Payment, Receipt
from idempotency.versioning_admin import VersionedModelAdmin


# VersionedModelAdmin: saving a change form of a payment that someone changed
# since the form was opened shows an error instead of overwriting their change.
@admin.register(Payment)
class PaymentAdmin(VersionedModelAdmin):
    list_display = ["id", "owner", "amount", "currency", "status", "version", "created_at"]
    list_filter = ["status", "currency"]
    search_fields = ["description", "processor_reference"]


@admin.register(Receipt)
class ReceiptAdmin(admin.ModelAdmin):
    list_display = ["id", "payment", "processor_reference", "received_at"]
