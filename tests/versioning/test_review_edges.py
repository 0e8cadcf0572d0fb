"""A VersionedModel edited without its version: a plain DRF ModelSerializer (E034) and a
plain admin.ModelAdmin or inline (E033).

Both load the object and save it in the same request, so the version check at
save passes every time and a stale write overwrites another's change. The
package refuses them with a system check that names the class and the fix
(docs/checks.md, docs/versioning.md).

The classes these tests make unsafe are never left where the default run sees
them: the admin sites are served only by the URLconfs below (E033 looks at
served admins), and the serializers are made in ``unversioned_serializer()``
and collected after (E034 looks at every imported ``ModelSerializer``).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.core.checks.registry import registry
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client
from django.urls import path
from rest_framework import permissions, serializers, viewsets
from rest_framework.routers import SimpleRouter

from idempotency.drf import IdempotencyMixin
from idempotency.versioning_admin import (
    VersionedModelAdmin,
    VersionedStackedInline,
    VersionedTabularInline,
)
from idempotency.versioning_drf import VersionField
from tests.testapp.models import Article, Note, Ticket

pytestmark = pytest.mark.django_db

PROBLEM_TYPE = "tag:django-idempotency,2026:stale-object"


def messages_of(check_id: str) -> list[Any]:
    return [m for m in registry.run_checks(tags=["idempotency"]) if m.id == check_id]


# ------------------------------------------------------------- serializers


class ArticleViewSet(IdempotencyMixin, viewsets.ModelViewSet):  # type: ignore[type-arg]
    """The serializer is set by each test (``serve``), so none stays imported after it."""

    queryset = Article.objects.all()
    serializer_class: Any = None
    permission_classes = [permissions.AllowAny]
    authentication_classes: list[Any] = []


router = SimpleRouter()
router.register("articles", ArticleViewSet, basename="review-edge-article")
urlpatterns = [*router.urls]


@contextmanager
def unversioned_serializer(**meta: Any) -> Iterator[None]:
    """A plain ModelSerializer of Article that lists the version, serving ``ArticleViewSet``
    for the duration of the block (and no longer: no reference to it is handed out)."""
    declared = meta.pop("declared", {})
    attributes = {"model": Article, **(meta or {"fields": ["id", "title", "version"]})}
    serializer: Any = type(
        "PlainArticleSerializer",
        (serializers.ModelSerializer,),
        {**declared, "Meta": type("Meta", (), attributes), "__module__": __name__},
    )
    ArticleViewSet.serializer_class = serializer
    try:
        yield
    finally:
        ArticleViewSet.serializer_class = None
        del serializer
        gc.collect()  # a class lives in reference cycles: collect it now
        assert not any(
            cls.__module__ == __name__ and cls.__name__ == "PlainArticleSerializer"
            for cls in serializers.ModelSerializer.__subclasses__()
        )


def put(client: Client, article: Article, **body: Any) -> Any:
    return client.put(
        f"/articles/{article.pk}/", {"title": "x", **body}, content_type="application/json"
    )


@pytest.mark.urls(__name__)
def test_a_plain_model_serializer_listing_the_version_overwrites_and_is_e034():
    # The finding: two clients read version 1 and both PUT it back; with a plain
    # ModelSerializer the version is read-only, so the second overwrites the first.
    with unversioned_serializer():
        article = Article.objects.create(title="a")
        first, second = Client(), Client()
        assert first.get(f"/articles/{article.pk}/").json()["version"] == 1
        assert second.get(f"/articles/{article.pk}/").json()["version"] == 1

        assert put(first, article, title="first", version=1).status_code == 200
        assert put(second, article, title="second", version=1).status_code == 200
        assert Article.objects.get(pk=article.pk).title == "second"  # first's change is lost

        # ... which the checks refuse, naming the serializer and the fix.
        (error,) = messages_of("idempotency.E034")
        assert error.level == 40  # ERROR: runserver, migrate and the test runner stop
        assert f"{__name__}.PlainArticleSerializer serializes testapp.Article" in error.msg
        assert "version = idempotency.versioning_drf.VersionField()" in error.msg
        assert error.hint


@pytest.mark.urls(__name__)
def test_the_fix_e034_names_answers_a_stale_put_409_and_keeps_the_other_change():
    class FixedArticleSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
        version = VersionField()

        class Meta:
            model = Article
            fields = ["id", "title", "version"]

    ArticleViewSet.serializer_class = FixedArticleSerializer
    try:
        article = Article.objects.create(title="a")
        first, second = Client(), Client()

        assert put(first, article, title="first", version=1).status_code == 200
        stale = put(second, article, title="second", version=1)

        assert stale.status_code == 409
        assert stale.headers["Content-Type"] == "application/problem+json"
        assert stale.json()["type"] == PROBLEM_TYPE
        assert Article.objects.values_list("title", "version").get(pk=article.pk) == ("first", 2)
        assert messages_of("idempotency.E034") == []
    finally:
        ArticleViewSet.serializer_class = None


@pytest.mark.parametrize(
    "meta",
    [
        {"fields": "__all__"},
        {"exclude": ["body"]},
        {"fields": ["id", "title", "version"], "read_only_fields": ["version"]},
        {"fields": ["id", "title", "version"],
         "declared": {"version": serializers.IntegerField(required=False)}},
        {"fields": ["id", "title", "revision"],
         "declared": {"revision": serializers.IntegerField(source="version")}},
    ],
    ids=["all", "exclude", "read-only", "integer-field", "other-name"],
)  # fmt: skip
def test_every_way_of_carrying_the_version_without_version_field_is_e034(meta):
    with unversioned_serializer(**meta):
        (error,) = messages_of("idempotency.E034")
    assert "PlainArticleSerializer" in error.msg


def test_serializers_that_do_not_carry_the_version_or_use_version_field_are_silent():
    # Every serializer the test suite has imported so far, the package's
    # VersionField ones (tests/versioning/views.py) among them.
    class WithoutVersion(serializers.ModelSerializer):  # type: ignore[type-arg]
        class Meta:
            model = Article
            fields = ["id", "title"]

    class NotVersioned(serializers.ModelSerializer):  # type: ignore[type-arg]
        class Meta:
            model = Ticket
            fields = "__all__"

    class SubclassOfVersionField(VersionField):
        pass

    class Inherited(serializers.ModelSerializer):  # type: ignore[type-arg]
        version = SubclassOfVersionField()

        class Meta:
            model = Article
            fields = "__all__"

    assert messages_of("idempotency.E034") == []


# ------------------------------------------------------------------ admin


plain_site = admin.AdminSite(name="review_edges_plain")
plain_site.register(Article, admin.ModelAdmin)


class PlainNoteInline(admin.StackedInline):  # type: ignore[type-arg]
    model = Note


class ArticleInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Article
    fk_name = "author"
    fields = ["title"]


class UserAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """An unversioned parent whose inline edits versioned rows without their version."""

    fields = ["username"]
    inlines = [ArticleInline]


inline_site = admin.AdminSite(name="review_edges_inline")
inline_site.register(User, UserAdmin)


class VersionedNoteInline(VersionedStackedInline):
    model = Note


class VersionedArticleInline(VersionedTabularInline):
    model = Article
    fk_name = "author"
    fields = ["title"]


class VersionedUserAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    fields = ["username"]
    inlines = [VersionedArticleInline]


class VersionedArticleAdmin(VersionedModelAdmin):
    fields = ["title"]
    inlines = [VersionedNoteInline]


versioned_site = admin.AdminSite(name="review_edges_versioned")
versioned_site.register(Article, VersionedArticleAdmin)
versioned_site.register(User, VersionedUserAdmin)


class PlainAdminURLs:
    urlpatterns = [path("plain/", plain_site.urls)]


class InlineAdminURLs:
    urlpatterns = [path("inline/", inline_site.urls)]


class VersionedAdminURLs:
    urlpatterns = [path("versioned/", versioned_site.urls)]


def test_a_plain_model_admin_of_a_versioned_model_is_e033(settings):
    settings.ROOT_URLCONF = PlainAdminURLs

    (error,) = messages_of("idempotency.E033")

    assert error.level == 40
    assert error.msg == (
        "django.contrib.admin.options.ModelAdmin edits testapp.Article, a VersionedModel, "
        "in the admin site 'review_edges_plain' without its version, so a stale edit "
        "overwrites another user's change: subclass "
        "idempotency.versioning_admin.VersionedModelAdmin instead of admin.ModelAdmin."
    )
    assert error.hint


def test_a_plain_inline_of_a_versioned_model_under_an_unversioned_parent_is_e033(settings):
    settings.ROOT_URLCONF = InlineAdminURLs

    (error,) = messages_of("idempotency.E033")

    assert f"{__name__}.UserAdmin's inline {__name__}.ArticleInline edits testapp.Article" in (
        error.msg
    )
    assert "idempotency.versioning_admin.VersionedTabularInline" in error.msg


def test_the_stacked_inline_fix_is_named_for_a_stacked_inline(settings):
    class PlainParentAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
        inlines = [PlainNoteInline]

    site = admin.AdminSite(name="review_edges_stacked")
    site.register(Article, PlainParentAdmin)

    class URLs:
        urlpatterns = [path("stacked/", site.urls)]

    settings.ROOT_URLCONF = URLs

    found = sorted(m.msg for m in messages_of("idempotency.E033"))

    assert len(found) == 2  # the parent admin and its inline
    assert "VersionedModelAdmin instead of admin.ModelAdmin" in found[0] + found[1]
    assert any("PlainNoteInline edits testapp.Note" in m for m in found)
    assert any("VersionedStackedInline instead" in m for m in found)


def test_manage_py_check_stops_on_a_plain_model_admin(settings):
    settings.ROOT_URLCONF = PlainAdminURLs

    with pytest.raises(SystemCheckError, match="idempotency.E033"):
        call_command("check")


def test_the_versioned_admin_and_inlines_pass_silently(settings):
    settings.ROOT_URLCONF = VersionedAdminURLs

    assert messages_of("idempotency.E033") == []
    call_command("check", fail_level="WARNING")  # Django's admin checks too


def test_the_package_test_admin_sites_pass_silently(settings):
    settings.ROOT_URLCONF = "tests.versioning.urls"

    assert messages_of("idempotency.E033") == []


def test_a_served_admin_of_an_unversioned_model_is_silent(settings):
    site = admin.AdminSite(name="review_edges_unversioned")
    site.register(Ticket, admin.ModelAdmin)

    class URLs:
        urlpatterns = [path("tickets/", site.urls)]

    settings.ROOT_URLCONF = URLs

    assert messages_of("idempotency.E033") == []
