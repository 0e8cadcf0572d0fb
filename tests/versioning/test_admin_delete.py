"""Deleting a VersionedModel in the admin: only at the version its confirmation page showed."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.contrib.admin.models import DELETION, LogEntry
from django.db.models import F
from django.urls import path

from idempotency.versioning_admin import VersionedModelAdmin
from tests.testapp.models import Article, Review

site = admin.AdminSite(name="versioned_delete_admin")
site.register(Article, VersionedModelAdmin)
site.register(Review, VersionedModelAdmin)

racy_site = admin.AdminSite(name="racy_delete_admin")


@admin.register(Article, site=racy_site)
class RacyArticleAdmin(VersionedModelAdmin):
    """Another writer changes the first selected article after the action read the rows
    (Django logs the deletions between its read and its delete)."""

    def log_deletions(self, request, queryset):
        super().log_deletions(request, queryset)
        first = min(obj.pk for obj in queryset)
        Article.objects.filter(pk=first).update(title="theirs", version=F("version") + 1)


urlpatterns = [path("dadmin/", site.urls), path("racy/", racy_site.urls)]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

STALE = "Someone else changed this object after the deletion page was shown"
STALE_SELECTION = "Someone else changed or deleted some of the selected objects"
UNCONFIRMED = "did not show the version of what it deletes"
SUCCESS = "deleted successfully"
VERSION_INPUT = re.compile(r'<input type="hidden" name="version" value="(\d+)">')
SELECTED_VERSION = re.compile(r'<input type="hidden" name="version-(\d+)" value="(\d+)">')


def delete_url(obj, prefix="dadmin"):
    return f"/{prefix}/testapp/{obj._meta.model_name}/{obj.pk}/delete/"


def changelist_url(model, prefix="dadmin"):
    return f"/{prefix}/testapp/{model._meta.model_name}/"


def shown_version(response):
    found = VERSION_INPUT.findall(response.content.decode())
    assert len(found) == 1, found
    return found[0]


def someone_else_saves(article):
    theirs = Article.objects.get(pk=article.pk)
    theirs.title = "an important change made after the confirmation was shown"
    theirs.save()


def deletion_logs():
    return LogEntry.objects.filter(action_flag=DELETION).count()


# ---------------------------------------------------------------- one object


def test_the_confirmation_page_carries_the_version_shown(admin_client):
    article = Article.objects.create(title="a")
    article.save()

    page = admin_client.get(delete_url(article))

    assert page.status_code == 200
    assert shown_version(page) == "2"
    assert 'name="post" value="yes"' in page.content.decode()  # Django's page otherwise


def test_confirming_the_version_shown_deletes_and_logs_as_django_does(admin_client):
    article = Article.objects.create(title="a")
    version = shown_version(admin_client.get(delete_url(article)))

    response = admin_client.post(delete_url(article), {"post": "yes", "version": version})

    assert response.status_code == 302
    assert response.url == changelist_url(Article)
    assert not Article.objects.filter(pk=article.pk).exists()
    entry = LogEntry.objects.get(action_flag=DELETION)
    assert (entry.object_id, entry.object_repr) == (str(article.pk), "a")
    assert SUCCESS in admin_client.get(response.url).content.decode()


def test_an_object_changed_after_its_confirmation_page_is_not_deleted(admin_client):
    article = Article.objects.create(title="a")
    version = shown_version(admin_client.get(delete_url(article)))
    someone_else_saves(article)

    response = admin_client.post(delete_url(article), {"post": "yes", "version": version})

    assert response.status_code == 302
    assert response.url == delete_url(article)  # the confirmation page again, up to date
    assert Article.objects.get(pk=article.pk).version == 2  # kept, and not bumped
    assert deletion_logs() == 0  # Django's log entry was rolled back with the delete
    again = admin_client.get(response.url)
    assert STALE in again.content.decode()
    assert shown_version(again) == "2"


def test_the_confirmation_page_keeps_djangos_translated_text(admin_client, settings):
    # The template repeats Django's sentence, whose msgid changed in Django 6.0.
    settings.LANGUAGE_CODE = "fr"
    article = Article.objects.create(title="a")

    page = admin_client.get(delete_url(article)).content.decode()

    assert "Voulez-vous vraiment supprimer l’objet article «\xa0a\xa0»" in page


def test_a_confirmation_without_the_version_deletes_nothing_and_asks_again(admin_client):
    # A page rendered before the upgrade, or a template that drops the input.
    article = Article.objects.create(title="a")

    response = admin_client.post(delete_url(article), {"post": "yes"})

    assert response.status_code == 302
    assert response.url == delete_url(article)
    assert Article.objects.filter(pk=article.pk).exists()
    again = admin_client.get(response.url)
    assert UNCONFIRMED in again.content.decode()
    assert shown_version(again) == "1"


@pytest.mark.parametrize("version", ["", "0", "-1", "x", "١", "99999999999"])
def test_a_malformed_version_deletes_nothing(admin_client, version):
    article = Article.objects.create(title="a")

    response = admin_client.post(delete_url(article), {"post": "yes", "version": version})

    assert response.status_code == 302
    assert Article.objects.filter(pk=article.pk).exists()


def test_multi_table_child_is_deleted_at_its_parents_version(admin_client):
    review = Review.objects.create(title="a", rating=1)
    version = shown_version(admin_client.get(delete_url(review)))
    Review.objects.get(pk=review.pk).save()

    stale = admin_client.post(delete_url(review), {"post": "yes", "version": version})
    assert stale.url == delete_url(review)
    assert Review.objects.filter(pk=review.pk).exists()

    fresh = admin_client.post(delete_url(review), {"post": "yes", "version": "2"})
    assert fresh.url == changelist_url(Review)
    assert not Article.objects.filter(pk=review.pk).exists()


# ------------------------------------------------------- delete_selected


def ask_to_delete(admin_client, objects, prefix="dadmin"):
    model = type(objects[0])
    return admin_client.post(
        changelist_url(model, prefix),
        {"action": "delete_selected", "_selected_action": [obj.pk for obj in objects]},
    )


def confirm(admin_client, page, model, prefix="dadmin", **changes):
    shown = dict(SELECTED_VERSION.findall(page.content.decode()))
    data = {
        "action": "delete_selected",
        "post": "yes",
        "_selected_action": list(shown),
        **{f"version-{pk}": version for pk, version in shown.items()},
        **changes,
    }
    return admin_client.post(changelist_url(model, prefix), data, follow=True)


def test_the_selection_confirmation_page_carries_each_version(admin_client):
    first, second = Article.objects.create(title="a"), Article.objects.create(title="b")
    second.save()

    page = ask_to_delete(admin_client, [first, second])

    assert page.status_code == 200
    assert sorted(SELECTED_VERSION.findall(page.content.decode())) == sorted(
        [(str(first.pk), "1"), (str(second.pk), "2")]
    )


def test_confirming_the_versions_shown_deletes_the_selection(admin_client):
    articles = [Article.objects.create(title=title) for title in "abc"]
    page = ask_to_delete(admin_client, articles[:2])

    response = confirm(admin_client, page, Article)

    assert "Successfully deleted 2 articles." in response.content.decode()
    assert list(Article.objects.values_list("title", flat=True)) == ["c"]
    assert deletion_logs() == 2


def test_a_selection_with_one_object_changed_after_its_confirmation_deletes_nothing(
    admin_client,
):
    first, second = Article.objects.create(title="a"), Article.objects.create(title="b")
    page = ask_to_delete(admin_client, [first, second])
    someone_else_saves(second)

    response = confirm(admin_client, page, Article)

    assert STALE_SELECTION in response.content.decode()
    assert "Successfully deleted" not in response.content.decode()
    assert sorted(Article.objects.values_list("pk", "version")) == [(first.pk, 1), (second.pk, 2)]
    assert deletion_logs() == 0


def test_a_selection_with_one_object_deleted_after_its_confirmation_deletes_nothing(
    admin_client,
):
    first, second = Article.objects.create(title="a"), Article.objects.create(title="b")
    page = ask_to_delete(admin_client, [first, second])
    Article.objects.get(pk=second.pk).delete()

    response = confirm(admin_client, page, Article)

    assert STALE_SELECTION in response.content.decode()
    assert Article.objects.filter(pk=first.pk).exists()


def test_a_change_between_the_actions_read_and_its_delete_deletes_nothing(admin_client):
    # The rows match when the action reads them; the conditional UPDATE that
    # locks them before the delete does not.
    first, second = Article.objects.create(title="a"), Article.objects.create(title="b")
    page = ask_to_delete(admin_client, [first, second], prefix="racy")

    response = confirm(admin_client, page, Article, prefix="racy")

    assert STALE_SELECTION in response.content.decode()
    assert Article.objects.count() == 2
    assert deletion_logs() == 0  # rolled back with the refused delete
    # The interleaved write ran on the admin's connection and was rolled back
    # with it; what matters is that nothing was deleted.


def test_a_selection_confirmed_without_versions_shows_the_confirmation_again(admin_client):
    articles = [Article.objects.create(title=title) for title in "ab"]

    response = admin_client.post(
        changelist_url(Article),
        {
            "action": "delete_selected",
            "post": "yes",
            "_selected_action": [obj.pk for obj in articles],
        },
    )

    assert response.status_code == 200
    assert UNCONFIRMED in response.content.decode()
    assert len(SELECTED_VERSION.findall(response.content.decode())) == 2
    assert Article.objects.count() == 2


def test_a_selection_of_multi_table_children(admin_client):
    reviews = [Review.objects.create(title=title, rating=1) for title in "ab"]
    page = ask_to_delete(admin_client, reviews)
    Review.objects.get(pk=reviews[0].pk).save()

    stale = confirm(admin_client, page, Review)
    assert STALE_SELECTION in stale.content.decode()
    assert Review.objects.count() == 2

    fresh = confirm(admin_client, ask_to_delete(admin_client, reviews), Review)
    assert "Successfully deleted 2 reviews." in fresh.content.decode()
    assert not Article.objects.exists()


def test_delete_selected_is_replaced_only_when_it_is_djangos(rf, admin_user):
    from django.contrib.admin.actions import delete_selected

    from idempotency import versioning_admin_delete

    request = rf.get("/")
    request.user = admin_user
    actions = site._registry[Article].get_actions(request)

    assert actions["delete_selected"][0] is versioning_admin_delete.delete_selected
    assert delete_selected not in [func for func, _, _ in actions.values()]
