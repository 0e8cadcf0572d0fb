"""Versioned models edited as admin inlines: each row carries its version."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.db.models import F
from django.db.models.signals import pre_save
from django.urls import path

from idempotency.versioning_admin import (
    VersionedModelAdmin,
    VersionedModelForm,
    VersionedStackedInline,
    VersionedTabularInline,
)
from tests.testapp.models import Article, Note, Ticket


class NoteInline(VersionedTabularInline):
    model = Note
    fields = ["text"]
    extra = 1


class StackedNoteInline(VersionedStackedInline):
    model = Note
    fieldsets = [("Note", {"fields": ["text"]})]
    extra = 1


class ArticleAdmin(VersionedModelAdmin):
    fields = ["title", "body", "state"]
    inlines = [NoteInline]


class StackedArticleAdmin(VersionedModelAdmin):
    fields = ["title", "body", "state"]
    inlines = [StackedNoteInline]


class PlainArticleAdmin(admin.ModelAdmin):
    """A parent admin that is not versioned: the inline rows still are."""

    fields = ["title", "body", "state"]
    inlines = [NoteInline]


tabular_site = admin.AdminSite(name="tabular_inline_admin")
tabular_site.register(Article, ArticleAdmin)
stacked_site = admin.AdminSite(name="stacked_inline_admin")
stacked_site.register(Article, StackedArticleAdmin)
plain_site = admin.AdminSite(name="plain_parent_admin")
plain_site.register(Article, PlainArticleAdmin)

urlpatterns = [
    path("tabular/", tabular_site.urls),
    path("stacked/", stacked_site.urls),
    path("plain/", plain_site.urls),
]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

STALE = "Someone else changed this object after you opened it"
STALE_DELETE = "Someone else changed a row you marked for deletion"
ROW_VERSION = re.compile(
    r'<input type="hidden" name="notes-(\d+|__prefix__)-version"(?: value="(\d*)")?'
)
SITES = ["tabular", "stacked", "plain"]


def change_url(site, article):
    return f"/{site}/testapp/article/{article.pk}/change/"


def article_with_notes(*texts):
    article = Article.objects.create(title="a")
    notes = [Note.objects.create(article=article, text=text) for text in texts]
    return article, notes


def form_data(article, notes, texts=None, versions=None, delete=(), new=None):
    """What the change form posts: the article, its rows, and an optional new row."""
    texts = texts or [note.text for note in notes]
    versions = versions or [note.version for note in notes]
    data = {
        "title": article.title,
        "body": "",
        "state": "draft",
        "version": article.version,
        "notes-TOTAL_FORMS": len(notes) + (1 if new else 0),
        "notes-INITIAL_FORMS": len(notes),
        "notes-MIN_NUM_FORMS": 0,
        "notes-MAX_NUM_FORMS": 1000,
    }
    for i, (note, text, version) in enumerate(zip(notes, texts, versions, strict=True)):
        data |= {
            f"notes-{i}-id": note.pk,
            f"notes-{i}-article": article.pk,
            f"notes-{i}-text": text,
            f"notes-{i}-version": version,
        }
        if i in delete:
            data[f"notes-{i}-DELETE"] = "on"
    if new:
        i = len(notes)
        data |= {f"notes-{i}-article": article.pk, f"notes-{i}-text": new}
    return data


def rows(site, article):
    return sorted(Note.objects.filter(article=article).values_list("text", "version"))


@pytest.mark.parametrize("site", SITES)
def test_each_row_carries_its_version_and_new_rows_a_blank_one(admin_client, site):
    article, (note,) = article_with_notes("n")
    note.save()

    page = admin_client.get(change_url(site, article))

    assert page.status_code == 200
    found = dict(ROW_VERSION.findall(page.content.decode()))
    assert found == {"0": "2", "1": "", "__prefix__": ""}  # saved row, extra row, template row


@pytest.mark.parametrize("site", SITES)
def test_rows_at_their_versions_save_and_bump(admin_client, site):
    article, notes = article_with_notes("n1", "n2")

    response = admin_client.post(
        change_url(site, article), form_data(article, notes, texts=["m1", "n2"], new="n3")
    )

    assert response.status_code == 302, response.content.decode()
    assert rows(site, article) == [("m1", 2), ("n2", 1), ("n3", 1)]


@pytest.mark.parametrize("site", SITES)
def test_a_row_changed_after_the_page_was_shown_is_a_form_error(admin_client, site):
    article, notes = article_with_notes("n1", "n2")
    theirs = Note.objects.get(pk=notes[1].pk)
    theirs.text = "theirs"
    theirs.save()

    response = admin_client.post(
        change_url(site, article), form_data(article, notes, texts=["m1", "m2"])
    )

    assert response.status_code == 200  # the form again, with the row's error
    assert STALE in response.content.decode()
    assert rows(site, article) == [("n1", 1), ("theirs", 2)]  # nothing of this submit saved


@pytest.mark.parametrize("site", SITES)
def test_deleting_a_row_changed_after_the_page_was_shown_is_refused(admin_client, site):
    article, notes = article_with_notes("n1", "n2")
    Note.objects.get(pk=notes[0].pk).save()

    response = admin_client.post(change_url(site, article), form_data(article, notes, delete=[0]))

    assert response.status_code == 200
    assert STALE_DELETE in response.content.decode()
    assert rows(site, article) == [("n1", 2), ("n2", 1)]


def test_deleting_a_row_at_its_version_deletes_it(admin_client):
    article, notes = article_with_notes("n1", "n2")

    response = admin_client.post(
        change_url("tabular", article), form_data(article, notes, delete=[0])
    )

    assert response.status_code == 302
    assert rows("tabular", article) == [("n2", 1)]


def test_a_row_changed_between_the_admins_read_and_its_save_is_a_message(admin_client):
    # The row matches when the formset validates; its conditional UPDATE does
    # not. The parent's VersionedModelAdmin turns that into a message.
    article, notes = article_with_notes("n1")

    def interleave(sender, instance, **kwargs):
        pre_save.disconnect(interleave, sender=Note)
        Note.objects.filter(pk=instance.pk).update(text="theirs", version=F("version") + 1)

    pre_save.connect(interleave, sender=Note)
    try:
        response = admin_client.post(
            change_url("tabular", article), form_data(article, notes, texts=["mine"])
        )
    finally:
        pre_save.disconnect(interleave, sender=Note)

    assert response.status_code == 302
    assert response.url == change_url("tabular", article)
    assert STALE in admin_client.get(response.url).content.decode()
    assert rows("tabular", article) == [("n1", 1)]  # all rolled back, "mine" never written


def test_a_versioned_admin_refuses_an_inline_without_versions_at_class_creation():
    class PlainNoteInline(admin.TabularInline):
        model = Note

    with pytest.raises(TypeError, match="subclass idempotency.versioning_admin.VersionedTabular"):

        class BrokenAdmin(VersionedModelAdmin):
            inlines = [PlainNoteInline]


def test_a_versioned_admin_refuses_an_inline_without_versions_from_get_inlines(rf, admin_user):
    class PlainNoteInline(admin.StackedInline):
        model = Note

    class DynamicAdmin(VersionedModelAdmin):
        def get_inlines(self, request, obj):
            return [PlainNoteInline]

    request = rf.get("/")
    request.user = admin_user
    with pytest.raises(TypeError, match="VersionedStackedInline instead"):
        DynamicAdmin(Article, admin.AdminSite(name="dynamic")).get_inline_instances(request)


def test_a_versioned_inline_of_a_model_that_is_not_versioned_is_refused():
    class TicketInline(VersionedTabularInline):
        model = Ticket

    with pytest.raises(TypeError, match="is not a VersionedModel"):
        TicketInline(Article, admin.AdminSite(name="other"))


def test_a_versioned_inline_with_a_form_that_is_not_versioned_is_refused():
    from django import forms

    class NoteForm(forms.ModelForm):
        class Meta:
            model = Note
            fields = ["text"]

    with pytest.raises(TypeError, match="must subclass"):

        class BrokenInline(VersionedTabularInline):
            model = Note
            form = NoteForm


def test_a_custom_versioned_form_on_an_inline(admin_client):
    class NoteForm(VersionedModelForm):
        class Meta:
            model = Note
            fields = ["text"]

    class CustomInline(VersionedTabularInline):
        model = Note
        form = NoteForm

    assert issubclass(CustomInline.form, VersionedModelForm)


def test_under_a_parent_admin_that_is_not_versioned_that_race_rolls_everything_back(
    admin_client,
):
    # Without VersionedModelAdmin's handler the StaleObjectError is a server
    # error; the admin's transaction is rolled back, so nothing is overwritten.
    from idempotency.versioning import StaleObjectError

    article, notes = article_with_notes("n1")

    def interleave(sender, instance, **kwargs):
        pre_save.disconnect(interleave, sender=Note)
        Note.objects.filter(pk=instance.pk).update(version=F("version") + 1)

    pre_save.connect(interleave, sender=Note)
    try:
        with pytest.raises(StaleObjectError):
            admin_client.post(
                change_url("plain", article),
                form_data(article, notes, texts=["mine"]) | {"title": "changed"},
            )
    finally:
        pre_save.disconnect(interleave, sender=Note)

    assert Article.objects.get(pk=article.pk).title == "a"
    assert rows("plain", article) == [("n1", 1)]
