from __future__ import annotations

from django.contrib import admin

from example_project.payments.models import Payment, Receipt


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    list_display = ["id", "owner", "amount", "currency", "status", "refunded", "created_at"]
    list_filter = ["status", "refunded", "currency"]
    search_fields = ["description", "processor_reference"]


@admin.register(Receipt)
class ReceiptAdmin(admin.ModelAdmin):
    list_display = ["id", "payment", "processor_reference", "received_at"]
