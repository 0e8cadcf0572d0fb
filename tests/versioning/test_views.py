"""StaleObjectError in an idempotent view: 409 problem details, and the key is released.

Contract section 9. The engine maps the error (idempotency.problems.StaleObject);
until it does, these tests are expected to fail, strictly, so that the day the
engine answers 409 they turn red and their marker is removed.
"""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from idempotency.models import IdempotencyRecord
from tests.testapp.models import Article

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.versioning.urls")]

PROBLEM_TYPE = "tag:django-idempotency,2026:stale-object"


def assert_stale_problem(response):
    assert response.status_code == 409
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert (problem["type"], problem["status"]) == (PROBLEM_TYPE, 409)


def stale_article():
    article = Article.objects.create(title="a")
    Article.objects.get(pk=article.pk).save()  # another writer: version 2
    return article


def test_decorated_view_answers_409_and_releases_the_key():
    article = stale_article()
    client = Client()
    key = str(uuid.uuid4())

    stale = client.post(
        f"/rename/{article.pk}/",
        {"title": "mine", "version": 1},
        content_type="application/json",
        headers={"Idempotency-Key": key},
    )

    assert_stale_problem(stale)
    assert not IdempotencyRecord.objects.filter(key=key).exists()
    retried = client.post(
        f"/rename/{article.pk}/",
        {"title": "mine", "version": 2},  # re-read, same key
        content_type="application/json",
        headers={"Idempotency-Key": key},
    )
    assert retried.status_code == 200
    assert retried.json()["version"] == 3


def test_mixin_viewset_answers_409_and_releases_the_key():
    article = stale_article()
    client = Client()
    key = str(uuid.uuid4())

    stale = client.patch(
        f"/idempotent-articles/{article.pk}/",
        {"title": "mine", "version": 1},
        content_type="application/json",
        headers={"Idempotency-Key": key},
    )

    assert_stale_problem(stale)
    assert not IdempotencyRecord.objects.filter(key=key).exists()
    assert Article.objects.values_list("title", "version").get(pk=article.pk) == ("a", 2)
