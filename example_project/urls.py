from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from rest_framework.routers import DefaultRouter

from example_project.payments import views

router = DefaultRouter()
router.register("payments", views.PaymentViewSet, basename="payment")

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/payments/<int:pk>/refund/", views.refund_payment, name="payment-refund"),
    path("api/", include(router.urls)),
    path("api-auth/", include("rest_framework.urls")),
    path("webhooks/receipt/", views.receipt_webhook, name="receipt-webhook"),
]
