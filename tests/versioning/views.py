"""Views, serializers and an admin site for tests/versioning (see urls.py)."""

from __future__ import annotations

import json

from django.contrib import admin
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from rest_framework import permissions, serializers, viewsets

from idempotency import idempotent
from idempotency.drf import IdempotencyMixin
from idempotency.versioning_admin import VersionedModelAdmin
from idempotency.versioning_drf import VersionField
from tests.testapp.models import Article, Review


class ArticleSerializer(serializers.ModelSerializer):
    version = VersionField()

    class Meta:
        model = Article
        fields = ["id", "title", "body", "state", "version"]


class ArticleViewSet(viewsets.ModelViewSet):
    queryset = Article.objects.all()
    serializer_class = ArticleSerializer
    permission_classes = [permissions.AllowAny]
    authentication_classes = []


class IdempotentArticleViewSet(IdempotencyMixin, ArticleViewSet):
    pass


@csrf_exempt
@idempotent
def rename_article(request, pk):
    """POST {"title": ..., "version": ...}: a plain view saving at the client's version."""
    data = json.loads(request.body)
    article = get_object_or_404(Article, pk=pk)
    article.title = data["title"]
    article.version = data["version"]
    article.save()
    return JsonResponse({"id": article.pk, "title": article.title, "version": article.version})


site = admin.AdminSite(name="versioning_admin")


@admin.register(Article, site=site)
class ArticleAdmin(VersionedModelAdmin):
    fields = ["title", "body", "state"]


@admin.register(Review, site=site)
class ReviewAdmin(VersionedModelAdmin):
    fieldsets = [("Text", {"fields": [("title", "state")]}), ("Score", {"fields": ["rating"]})]
