from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from tests.testapp import views

router = SimpleRouter()
router.register("viewset", views.ChargeViewSet, basename="viewset")
router.register(
    "authenticated-viewset", views.AuthenticatedViewSet, basename="authenticated-viewset"
)
router.register("action", views.ActionViewSet, basename="action")

urlpatterns = [
    path("plain/", views.plain_view),
    path("plain-required/", views.plain_required_view),
    path("api-function/", views.api_function_view),
    path("api-authenticated/", views.api_authenticated_view),
    path("api-view/", views.ChargeAPIView.as_view()),
    path("class-view/", views.PlainClassView.as_view()),
    path("", include(router.urls)),
]
