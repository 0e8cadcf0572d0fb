"""Edges of versioned models found in review 13: a stale 409 under
ATOMIC_REQUESTS, formsets deleting stale rows, a deferred version, a version
carried as a string, a row at version 0.

Each test asserts the behaviour the contract (section 9) or docs/versioning.md
promise.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.db import connection
from django.forms.models import inlineformset_factory, modelformset_factory
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.test import Client
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from rest_framework import permissions, serializers, viewsets
from rest_framework.routers import SimpleRouter

from idempotency import idempotent
from idempotency.drf import IdempotencyMixin
from idempotency.versioning import StaleObjectError
from idempotency.versioning_admin import VersionedModelForm
from idempotency.versioning_drf import VersionField
from tests.testapp.models import Article, Charge, Note

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.versioning.test_edges")]


# ----------------------------------------------------------------- views


@csrf_exempt
@idempotent
def audited_rename(request: Any, pk: int) -> HttpResponse:
    """Writes an audit row (a Charge), then saves the article at the client's version."""
    data = json.loads(request.body)
    Charge.objects.create(amount=1, label="audit")
    article = get_object_or_404(Article, pk=pk)
    article.title = data["title"]
    article.version = data["version"]
    article.save()
    return JsonResponse({"version": article.version})


class AuditedArticleSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    version = VersionField()

    class Meta:
        model = Article
        fields = ["id", "title", "version"]


class AuditedArticleViewSet(IdempotencyMixin, viewsets.ModelViewSet):  # type: ignore[type-arg]
    queryset = Article.objects.all()
    serializer_class = AuditedArticleSerializer
    permission_classes = [permissions.AllowAny]
    authentication_classes: list[Any] = []

    def perform_update(self, serializer: Any) -> None:
        Charge.objects.create(amount=1, label="audit")
        serializer.save()


@csrf_exempt
@idempotent
def form_rename(request: Any, pk: int) -> HttpResponse:
    """An HTML form view carrying the version the page showed, as docs/versioning.md
    invites ("except to carry the version a client read")."""
    article = get_object_or_404(Article, pk=pk)
    article.title = request.POST["title"]
    article.version = request.POST["version"]
    article.save()
    return HttpResponse(str(article.version))


router = SimpleRouter()
router.register("audited", AuditedArticleViewSet, basename="audited")

urlpatterns = [
    path("rename/<int:pk>/", audited_rename),
    path("form-rename/<int:pk>/", form_rename),
    *router.urls,
]


def stale_article() -> Article:
    article = Article.objects.create(title="a")
    Article.objects.get(pk=article.pk).save()  # another writer: version 2
    return article


# ------------------------------------------------ 409 under ATOMIC_REQUESTS


def test_stale_409_without_a_key_under_atomic_requests_rolls_back_the_views_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A keyless request answered 409 stale-object must not commit what the view
    wrote before the stale save: Django would have rolled the request back on the
    exception, and the client is told to re-read and retry (which writes it again)."""
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    article = stale_article()

    response = Client().post(
        f"/rename/{article.pk}/", {"title": "mine", "version": 1}, content_type="application/json"
    )

    assert response.status_code == 409
    assert Charge.objects.count() == 0  # the audit row of the refused request is gone


def test_stale_409_with_a_key_under_atomic_requests_rolls_back_the_views_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same with a key and atomic=True; the key is released, so the retry runs."""
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    article = stale_article()
    headers = {"Idempotency-Key": "stale-under-atomic-requests"}

    refused = Client().post(f"/rename/{article.pk}/", {"title": "mine", "version": 1},
                            content_type="application/json", headers=headers)  # fmt: skip
    assert refused.status_code == 409
    assert Charge.objects.count() == 0
    retried = Client().post(f"/rename/{article.pk}/", {"title": "mine", "version": 2},
                            content_type="application/json", headers=headers)  # fmt: skip

    assert retried.status_code == 200, retried.content
    assert Charge.objects.count() == 1
    assert Article.objects.get(pk=article.pk).title == "mine"


def test_stale_409_without_a_key_in_a_drf_viewset_under_atomic_requests_rolls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    article = stale_article()

    response = Client().patch(
        f"/audited/{article.pk}/", {"title": "mine", "version": 1}, content_type="application/json"
    )

    assert response.status_code == 409
    assert Charge.objects.count() == 0


def test_stale_409_without_atomic_requests_leaves_the_tests_transaction_usable() -> None:
    """Only the request's own transaction is marked: the enclosing one of the
    test case (or of a caller that catches nothing) still runs queries."""
    article = stale_article()

    response = Client().post(
        f"/rename/{article.pk}/", {"title": "mine", "version": 1}, content_type="application/json"
    )

    assert response.status_code == 409
    assert Charge.objects.count() == 1  # no transaction of the request's: autocommit wrote it


# ------------------------------------------------------ formsets of versioned forms


class ArticleForm(VersionedModelForm):
    class Meta:
        model = Article
        fields = ["title"]


class NoteForm(VersionedModelForm):
    class Meta:
        model = Note
        fields = ["text"]


def article_formset_data(article: Article, **row: str) -> dict[str, str]:
    data = {
        "form-TOTAL_FORMS": "1",
        "form-INITIAL_FORMS": "1",
        "form-0-id": str(article.pk),
        "form-0-title": "a",
        "form-0-DELETE": "on",
    }
    data.update({f"form-0-{name}": value for name, value in row.items()})
    return data


def test_a_model_formset_of_versioned_forms_refuses_deleting_a_stale_row() -> None:
    """VersionedModelForm 'works outside the admin too'; in a model formset a
    row marked for deletion is deleted even though it changed after the page
    was shown (its stale error is ignored, as the formset skips deleted forms)."""
    article = Article.objects.create(title="a")
    Formset = modelformset_factory(Article, form=ArticleForm, can_delete=True, extra=0)
    shown = Formset(queryset=Article.objects.all())
    version_shown = shown.forms[0]["version"].value()
    theirs = Article.objects.get(pk=article.pk)
    theirs.title = "theirs"
    theirs.save()  # another user changes it after the page was shown

    data = article_formset_data(article, version=str(version_shown))
    formset = Formset(data, queryset=Article.objects.all())
    if formset.is_valid():
        formset.save()

    assert not formset.is_valid()
    assert Article.objects.filter(pk=article.pk).exists()


@pytest.mark.parametrize("posted", [None, "", "x", "-1"])
def test_a_model_formset_refuses_deleting_a_row_posted_without_a_valid_version(
    posted: str | None,
) -> None:
    article = Article.objects.create(title="a")
    Formset = modelformset_factory(Article, form=ArticleForm, can_delete=True, extra=0)
    data = article_formset_data(article) if posted is None else (
        article_formset_data(article, version=posted))  # fmt: skip

    formset = Formset(data, queryset=Article.objects.all())

    assert not formset.is_valid()
    assert formset.forms[0].has_error("__all__", code="unversioned")
    assert Article.objects.filter(pk=article.pk).exists()


def test_a_model_formset_deletes_a_row_at_the_version_shown() -> None:
    article = Article.objects.create(title="a")
    Formset = modelformset_factory(Article, form=ArticleForm, can_delete=True, extra=0)

    formset = Formset(article_formset_data(article, version="1"), queryset=Article.objects.all())
    assert formset.is_valid(), formset.errors
    formset.save()

    assert not Article.objects.filter(pk=article.pk).exists()


def test_a_model_formset_delete_that_loses_a_race_raises_stale() -> None:
    """The row changes between the formset's validation and its save: delete()
    checks the version the form posted, not the one read after it."""
    article = Article.objects.create(title="a")
    Formset = modelformset_factory(Article, form=ArticleForm, can_delete=True, extra=0)
    formset = Formset(article_formset_data(article, version="1"), queryset=Article.objects.all())
    assert formset.is_valid(), formset.errors
    Article.objects.get(pk=article.pk).save()  # version 2, after the validation

    with pytest.raises(StaleObjectError):
        formset.save()

    assert Article.objects.filter(pk=article.pk).exists()


def note_formset_data(article: Article, note: Note, **row: str) -> dict[str, str]:
    data = {
        "notes-TOTAL_FORMS": "1",
        "notes-INITIAL_FORMS": "1",
        "notes-0-id": str(note.pk),
        "notes-0-article": str(article.pk),
        "notes-0-text": "n",
        "notes-0-DELETE": "on",
    }
    data.update({f"notes-0-{name}": value for name, value in row.items()})
    return data


def test_an_inline_formset_of_versioned_forms_refuses_deleting_a_stale_row() -> None:
    """inlineformset_factory(..., form=VersionedModelForm) with Django's default
    formset: a stale row marked for deletion is deleted. Nothing refuses the
    combination, as the admin's inlines are refused."""
    article = Article.objects.create(title="a")
    note = Note.objects.create(article=article, text="n")
    Formset = inlineformset_factory(Article, Note, form=NoteForm, can_delete=True, extra=0)
    version_shown = Formset(instance=article).forms[0]["version"].value()
    theirs = Note.objects.get(pk=note.pk)
    theirs.text = "theirs"
    theirs.save()

    formset = Formset(note_formset_data(article, note, version=str(version_shown)),
                      instance=article)  # fmt: skip
    if formset.is_valid():
        formset.save()

    assert not formset.is_valid()
    assert Note.objects.filter(pk=note.pk).exists()


@pytest.mark.urls("tests.versioning.test_admin_inlines")
def test_an_inline_row_deleted_without_its_version_is_not_deleted(admin_client: Client) -> None:
    """The delete confirmation refuses a POST without the version (a page from
    before the upgrade, a template that leaves it out). An inline row marked
    for deletion without its version is deleted whatever changed since: a
    deleted form's field errors are ignored, so the stale check never runs."""
    from tests.versioning.test_admin_inlines import article_with_notes, change_url, form_data

    article, (note,) = article_with_notes("n")
    theirs = Note.objects.get(pk=note.pk)
    theirs.text = "theirs"
    theirs.save()  # another user changes the row after the page was shown
    data = form_data(article, [note], delete=(0,))
    del data["notes-0-version"]

    response = admin_client.post(change_url("tabular", article), data)

    assert response.status_code == 200  # the change form again, with the error
    assert "marked for deletion on a page that did not carry its version" in (
        response.content.decode()
    )
    assert Note.objects.filter(pk=note.pk).exists()


# ------------------------------------------------------------- deferred version


def test_a_deferred_version_loaded_after_another_writer_saved_is_still_stale() -> None:
    """A save of an instance loaded without its version is refused (ValueError);
    but reading instance.version first (a template, a log line, a serializer)
    makes Django load the row's current version, and the save then overwrites
    the change made after the instance was read."""
    article = Article.objects.create(title="a")
    mine = Article.objects.only("title", "body").get(pk=article.pk)  # read at version 1
    theirs = Article.objects.get(pk=article.pk)
    theirs.body = "theirs"
    theirs.save()  # version 2
    assert mine.version  # Django loads the deferred field: 2

    mine.title = "mine"
    with pytest.raises((StaleObjectError, ValueError)):
        mine.save()
    with pytest.raises((StaleObjectError, ValueError)):
        mine.delete()

    assert Article.objects.get(pk=article.pk).title == "a"


def test_a_deferred_version_set_by_the_caller_is_checked() -> None:
    """Loading without the version and then setting the version the client read
    (the documented way to carry it) saves at that version."""
    article = stale_article()  # version 2
    mine = Article.objects.only("title").get(pk=article.pk)
    mine.version = 1
    mine.title = "mine"

    with pytest.raises(StaleObjectError):
        mine.save()
    mine.version = 2
    mine.save()

    assert Article.objects.values_list("title", "version").get(pk=article.pk) == ("mine", 3)


def test_a_full_refresh_after_the_late_read_makes_the_instance_current() -> None:
    """refresh_from_db() then reads the version with the other loaded fields:
    the instance is at the version it shows, and saves at it."""
    article = Article.objects.create(title="a")
    mine = Article.objects.only("title").get(pk=article.pk)
    Article.objects.get(pk=article.pk).save()  # version 2
    assert mine.version == 2  # loaded late
    mine.refresh_from_db()
    mine.title = "mine"
    mine.save()

    assert Article.objects.values_list("title", "version").get(pk=article.pk) == ("mine", 3)


def test_a_version_loaded_with_the_instance_is_not_refused() -> None:
    article = Article.objects.create(title="a")
    mine = Article.objects.only("title", "version").get(pk=article.pk)
    assert mine.version == 1
    mine.title = "mine"
    mine.save()

    assert Article.objects.values_list("title", "version").get(pk=article.pk) == ("mine", 2)


# ------------------------------------------------------- a version as a string


def test_a_version_carried_from_a_form_field_is_checked_not_a_500() -> None:
    article = stale_article()  # version 2

    stale = Client(raise_request_exception=False).post(
        f"/form-rename/{article.pk}/", {"title": "mine", "version": "1"}
    )
    fresh = Client(raise_request_exception=False).post(
        f"/form-rename/{article.pk}/", {"title": "mine", "version": "2"}
    )

    assert stale.status_code == 409
    assert (fresh.status_code, fresh.content) == (200, b"3")


@pytest.mark.parametrize("version", ["", "two", "1.0", "-1", " 2", "²", True, 2.0])
def test_a_version_that_is_not_a_whole_number_is_refused_before_any_write(version: Any) -> None:
    article = stale_article()
    article.version = version

    with pytest.raises(TypeError, match="version"):
        article.save()

    assert Article.objects.get(pk=article.pk).version == 2


# ------------------------------------------------------------------ version 0


@pytest.mark.urls("tests.versioning.urls")
def test_a_row_at_version_0_can_be_edited_in_the_admin(admin_client: Client) -> None:
    """version is a PositiveIntegerField, so 0 is a valid stored version (set on
    create, by a fixture, or by a migration from django-concurrency, whose
    fields start at 0). VersionedModelForm's hidden field had min_value=1: the
    change form of such a row could never be saved."""
    article = Article.objects.create(title="a", version=0)
    page = admin_client.get(f"/vadmin/testapp/article/{article.pk}/change/").content.decode()
    shown = re.findall(r'<input type="hidden" name="version" value="(\d+)"', page)

    response = admin_client.post(
        f"/vadmin/testapp/article/{article.pk}/change/",
        {"title": "mine", "body": "", "state": "draft", "version": shown[0]},
    )

    assert response.status_code == 302
    assert Article.objects.values_list("title", "version").get(pk=article.pk) == ("mine", 1)


@pytest.mark.urls("tests.versioning.urls")
def test_a_row_at_version_0_can_be_deleted_in_the_admin(admin_client: Client) -> None:
    article = Article.objects.create(title="a", version=0)

    response = admin_client.post(
        f"/vadmin/testapp/article/{article.pk}/delete/", {"post": "yes", "version": "0"}
    )

    assert response.status_code == 302
    assert not Article.objects.filter(pk=article.pk).exists()


def test_a_row_at_version_0_is_updated_through_versionfield() -> None:
    article = Article.objects.create(title="a", version=0)

    response = Client().patch(
        f"/audited/{article.pk}/", {"title": "mine", "version": 0}, content_type="application/json"
    )

    assert response.status_code == 200, response.content
    assert Article.objects.values_list("title", "version").get(pk=article.pk) == ("mine", 1)
