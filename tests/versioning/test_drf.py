"""VersionField: a client sends back the version it read; a stale update fails."""

from __future__ import annotations

import pytest
from rest_framework import serializers
from rest_framework.test import APIClient

from idempotency.versioning import StaleObjectError
from idempotency.versioning_drf import VersionField
from tests.testapp.models import Article, Ticket
from tests.versioning.views import ArticleSerializer

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.versioning.urls")]


@pytest.fixture
def api():
    # Stale writes raise out of a view without @idempotent; see test_views.py.
    return APIClient(raise_request_exception=True)


def test_reads_show_the_version(api):
    article = Article.objects.create(title="a")
    article.save()

    assert api.get(f"/articles/{article.pk}/").json()["version"] == 2


def test_update_with_the_version_read_saves_and_answers_the_next_version(api):
    article = Article.objects.create(title="a")

    response = api.put(f"/articles/{article.pk}/", {"title": "b", "version": 1}, format="json")

    assert response.status_code == 200
    assert response.json()["version"] == 2
    assert Article.objects.values_list("title", "version").get(pk=article.pk) == ("b", 2)


def test_serializer_save_with_an_old_version_raises_stale_and_writes_nothing():
    article = Article.objects.create(title="a")
    Article.objects.get(pk=article.pk).save()  # another writer: version 2
    serializer = ArticleSerializer(
        Article.objects.get(pk=article.pk), data={"title": "mine", "version": 1}, partial=True
    )
    assert serializer.is_valid(), serializer.errors

    with pytest.raises(StaleObjectError) as raised:
        serializer.save()

    assert raised.value.expected_version == 1
    assert Article.objects.values_list("title", "version").get(pk=article.pk) == ("a", 2)


@pytest.mark.parametrize("method", ["put", "patch"])
def test_update_without_a_version_is_refused(api, method):
    article = Article.objects.create(title="a")

    response = getattr(api, method)(f"/articles/{article.pk}/", {"title": "b"}, format="json")

    assert response.status_code == 400
    assert "Send the version you read" in response.json()["version"][0]
    assert Article.objects.get(pk=article.pk).title == "a"


def test_a_negative_version_is_refused(api):
    # 0 is a version a row can hold (tests/versioning/test_edges.py); below it, none.
    article = Article.objects.create(title="a")

    response = api.patch(f"/articles/{article.pk}/", {"version": -1}, format="json")

    assert response.status_code == 400


def test_create_ignores_a_version_sent_by_the_client(api):
    response = api.post("/articles/", {"title": "new", "version": 7}, format="json")

    assert response.status_code == 201
    assert response.json()["version"] == 1
    assert Article.objects.get().version == 1


def test_version_field_on_a_model_that_is_not_versioned_is_refused():
    class TicketSerializer(serializers.ModelSerializer):
        version = VersionField()

        class Meta:
            model = Ticket
            fields = ["state", "version"]

    with pytest.raises(TypeError, match="Ticket is not a VersionedModel"):
        TicketSerializer().fields  # noqa: B018  (binding the fields runs the check)
