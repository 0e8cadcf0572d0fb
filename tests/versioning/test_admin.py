"""The admin of a VersionedModel: a stale change form shows an error, never overwrites."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.db.models import F
from django.db.models.signals import pre_save

from idempotency.versioning_admin import VersionedModelAdmin, VersionedModelForm
from tests.testapp.models import Article, Review, Ticket

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.versioning.urls")]

STALE = "Someone else changed this object after you opened it"
HIDDEN_VERSION = re.compile(r'<input type="hidden" name="version" value="(\d+)"')


def change_url(obj):
    return f"/vadmin/testapp/{obj._meta.model_name}/{obj.pk}/change/"


def rendered_version(response):
    found = HIDDEN_VERSION.findall(response.content.decode())
    assert len(found) == 1, found
    return int(found[0])


def post_form(admin_client, obj, version, **fields):
    data = {"title": "mine", "body": "", "state": "draft", "version": version, **fields}
    return admin_client.post(change_url(obj), data)


def test_change_form_carries_the_version_it_was_rendered_with(admin_client):
    article = Article.objects.create(title="a")
    article.save()

    response = admin_client.get(change_url(article))

    assert response.status_code == 200
    assert rendered_version(response) == 2


def test_saving_the_current_version_saves_and_bumps_it(admin_client):
    article = Article.objects.create(title="a")

    response = post_form(admin_client, article, version=1)

    assert response.status_code == 302
    assert Article.objects.values_list("title", "version").get(pk=article.pk) == ("mine", 2)


def test_stale_change_form_shows_an_error_and_keeps_the_other_change(admin_client):
    article = Article.objects.create(title="a")
    opened = rendered_version(admin_client.get(change_url(article)))
    theirs = Article.objects.get(pk=article.pk)
    theirs.title = "theirs"
    theirs.save()  # another user saves first

    response = post_form(admin_client, article, version=opened)

    assert response.status_code == 200  # the form again, with the error
    assert STALE in response.content.decode()
    assert 'value="mine"' in response.content.decode()  # the user's edit is still in the form
    assert Article.objects.values_list("title", "version").get(pk=article.pk) == ("theirs", 2)


def test_a_change_between_the_admins_read_and_its_save_is_a_message(admin_client):
    # Another writer commits after the admin read the object for this POST and
    # before its UPDATE: the conditional UPDATE finds no row at that version.
    article = Article.objects.create(title="a")

    def interleave(sender, instance, **kwargs):
        pre_save.disconnect(interleave, sender=Article)
        Article.objects.filter(pk=instance.pk).update(title="theirs", version=F("version") + 1)

    pre_save.connect(interleave, sender=Article)
    try:
        response = post_form(admin_client, article, version=1)
    finally:
        pre_save.disconnect(interleave, sender=Article)

    assert response.status_code == 302
    assert response.url == change_url(article)
    assert STALE in admin_client.get(response.url).content.decode()
    # The interleaved write ran on the admin's own connection, so the admin's
    # rollback took it too; what matters is that "mine" was never written.
    assert Article.objects.values_list("title", "version").get(pk=article.pk) == ("a", 1)


def test_add_form_has_no_version_and_creates_at_one(admin_client):
    response = admin_client.get("/vadmin/testapp/article/add/")
    assert not HIDDEN_VERSION.findall(response.content.decode())

    created = admin_client.post(
        "/vadmin/testapp/article/add/", {"title": "new", "body": "", "state": "draft"}
    )

    assert created.status_code == 302
    assert Article.objects.get().version == 1


def test_fieldsets_with_fields_on_one_line_and_multi_table_inheritance(admin_client):
    review = Review.objects.create(title="a", rating=1)
    response = admin_client.get(change_url(review))
    assert rendered_version(response) == 1

    saved = admin_client.post(
        change_url(review), {"title": "b", "state": "draft", "rating": 2, "version": 1}
    )
    stale = admin_client.post(
        change_url(review), {"title": "c", "state": "draft", "rating": 3, "version": 1}
    )

    assert saved.status_code == 302
    assert STALE in stale.content.decode()
    assert Review.objects.values_list("title", "rating", "version").get(pk=review.pk) == (
        "b",
        2,
        2,
    )


def test_a_form_that_is_not_versioned_is_refused_at_class_creation():
    from django import forms

    class TicketForm(forms.ModelForm):
        class Meta:
            model = Article
            fields = ["title"]

    with pytest.raises(TypeError, match="must subclass"):

        class BrokenAdmin(VersionedModelAdmin):
            form = TicketForm


def test_a_model_that_is_not_versioned_is_refused_at_registration():
    with pytest.raises(TypeError, match="Ticket is not a VersionedModel"):
        VersionedModelAdmin(Ticket, admin.AdminSite(name="other"))


def test_versioned_form_outside_the_admin():
    article = Article.objects.create(title="a")

    class ArticleForm(VersionedModelForm):
        class Meta:
            model = Article
            fields = ["title"]

    assert ArticleForm(instance=article).initial["version"] == 1
    Article.objects.get(pk=article.pk).save()
    stale = ArticleForm({"title": "b", "version": 1}, instance=Article.objects.get(pk=article.pk))
    assert not stale.is_valid()
    assert stale.non_field_errors().as_data()[0].code == "stale"
    fresh = ArticleForm({"title": "b", "version": 2}, instance=Article.objects.get(pk=article.pk))
    assert fresh.is_valid(), fresh.errors
    assert fresh.save().version == 3
