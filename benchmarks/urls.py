from __future__ import annotations

from django.urls import path

from benchmarks import views

urlpatterns = [
    path("bare/", views.bare_view),
    path("idempotent/", views.idempotent_view),
    path("drf/bare/", views.BareOrderCreate.as_view()),
    path("drf/idempotent/", views.IdempotentOrderCreate.as_view()),
    path("drf/token/bare/", views.TokenBareOrderCreate.as_view()),
    path("drf/token/idempotent/", views.TokenIdempotentOrderCreate.as_view()),
    path("noop/", views.idempotent_noop_view),
]
