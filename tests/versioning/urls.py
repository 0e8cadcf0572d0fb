from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from tests.versioning import views

router = SimpleRouter()
router.register("articles", views.ArticleViewSet, basename="article")
router.register("idempotent-articles", views.IdempotentArticleViewSet, basename="idem-article")

urlpatterns = [
    path("vadmin/", views.site.urls),
    path("rename/<int:pk>/", views.rename_article),
    *router.urls,
]
