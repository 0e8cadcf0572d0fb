"""VersionedModel: saves and deletes conditional on the version an instance was read at."""

from __future__ import annotations

import pickle

import pytest
from django.core import serializers
from django.db import IntegrityError, connection, models, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from idempotency.versioning import StaleObjectError, VersionedModel
from tests.testapp.models import Article, PublishedArticle, Review

pytestmark = pytest.mark.django_db


def changed_elsewhere(instance: Article, **changes: object) -> Article:
    """Another writer's change: a second copy read and saved."""
    other = type(instance).objects.get(pk=instance.pk)
    for name, value in changes.items():
        setattr(other, name, value)
    other.save()
    return other


def test_version_field_is_a_positive_integer_starting_at_one():
    field = Article._meta.get_field("version")

    assert type(field).__name__ == "PositiveIntegerField"
    assert field.default == 1
    assert VersionedModel._meta.abstract


def test_create_inserts_at_version_one_in_one_statement(django_assert_num_queries):
    with django_assert_num_queries(1) as captured:
        article = Article.objects.create(title="a")

    assert captured.captured_queries[0]["sql"].startswith("INSERT")
    assert article.version == 1
    assert Article.objects.get(pk=article.pk).version == 1


def test_save_of_a_new_instance_inserts(django_assert_num_queries):
    article = Article(title="a")
    with django_assert_num_queries(1):
        article.save()

    assert Article.objects.filter(pk=article.pk, version=1).exists()


def test_save_updates_with_one_statement_and_bumps_the_version(django_assert_num_queries):
    article = Article.objects.create(title="a")
    article.title = "b"

    with django_assert_num_queries(1) as captured:
        article.save()

    sql = captured.captured_queries[0]["sql"]
    assert sql.startswith("UPDATE")
    assert "version" in sql.split("WHERE", 1)[1]
    assert article.version == 2
    assert Article.objects.values_list("title", "version").get(pk=article.pk) == ("b", 2)


def test_each_save_bumps_the_version_again():
    article = Article.objects.create(title="a")
    for expected in (2, 3, 4):
        article.save()
        assert article.version == expected
    assert Article.objects.get(pk=article.pk).version == 4


def test_stale_save_raises_and_writes_nothing(django_assert_num_queries):
    article = Article.objects.create(title="a")
    changed_elsewhere(article, title="theirs")
    article.title = "mine"

    with django_assert_num_queries(1), pytest.raises(StaleObjectError) as raised:
        article.save()

    assert (raised.value.model, raised.value.pk, raised.value.expected_version) == (
        Article,
        article.pk,
        1,
    )
    assert article.version == 1  # unchanged: the save did not happen
    assert Article.objects.values_list("title", "version").get(pk=article.pk) == ("theirs", 2)


def test_stale_error_message_names_the_object_and_the_version():
    error = StaleObjectError(Article, 7, 3)

    assert "testapp.Article pk=7" in str(error)
    assert "version 3" in str(error)


def test_stale_error_survives_pickling():
    error = pickle.loads(pickle.dumps(StaleObjectError(Article, 7, 3)))

    assert (error.model, error.pk, error.expected_version) == (Article, 7, 3)
    assert str(error) == str(StaleObjectError(Article, 7, 3))


def test_update_fields_writes_only_those_fields_and_the_version(django_assert_num_queries):
    article = Article.objects.create(title="a", body="old body")
    Article.objects.filter(pk=article.pk).update(body="their body")  # not versioned
    article.title = "b"
    article.body = "my body"

    with django_assert_num_queries(1) as captured:
        article.save(update_fields=["title"])

    set_clause = captured.captured_queries[0]["sql"].split("WHERE")[0]
    assert "title" in set_clause and "version" in set_clause
    assert "body" not in set_clause and "edited_at" not in set_clause
    assert Article.objects.values_list("title", "body", "version").get(pk=article.pk) == (
        "b",
        "their body",
        2,
    )
    assert article.version == 2


def test_stale_save_with_update_fields_raises_stale_rather_than_database_error():
    article = Article.objects.create(title="a")
    changed_elsewhere(article)

    with pytest.raises(StaleObjectError):
        article.save(update_fields=["title"])


def test_empty_update_fields_saves_nothing(django_assert_num_queries):
    article = Article.objects.create(title="a")

    with django_assert_num_queries(0):
        article.save(update_fields=[])

    assert article.version == 1


def test_save_of_a_deleted_row_raises_instead_of_inserting_it_again(django_assert_num_queries):
    article = Article.objects.create(title="a")
    Article.objects.filter(pk=article.pk).delete()  # another writer deletes it

    with django_assert_num_queries(1), pytest.raises(StaleObjectError):
        article.save()

    assert not Article.objects.filter(pk=article.pk).exists()


def test_new_instance_with_an_existing_pk_never_overwrites_the_row():
    article = Article.objects.create(title="theirs")
    Article.objects.filter(pk=article.pk).update(version=5)
    intruder = Article(pk=article.pk, title="mine")

    with pytest.raises(IntegrityError), transaction.atomic():
        intruder.save()

    assert Article.objects.values_list("title", "version").get(pk=article.pk) == ("theirs", 5)


def test_new_instance_with_a_free_pk_is_inserted_in_one_statement(django_assert_num_queries):
    # Django would try an UPDATE first; a new versioned instance goes straight to INSERT.
    with django_assert_num_queries(1) as captured:
        Article(pk=4242, title="a").save()

    assert captured.captured_queries[0]["sql"].startswith("INSERT")
    assert Article.objects.get(pk=4242).version == 1


def test_force_insert_inserts_as_usual():
    article = Article.objects.create(title="a")

    with pytest.raises(IntegrityError), transaction.atomic():
        article.save(force_insert=True)  # the pk exists: an INSERT fails, nothing is updated

    copy = Article(title="copy")
    copy.save(force_insert=True)
    assert copy.version == 1


def test_force_update_on_a_new_instance_checks_its_version():
    article = Article.objects.create(title="a")
    blind = Article(pk=article.pk, title="blind", version=1)
    blind.save(force_update=True)
    assert blind.version == 2

    again = Article(pk=article.pk, title="again", version=1)
    with pytest.raises(StaleObjectError):
        again.save(force_update=True)
    assert Article.objects.get(pk=article.pk).title == "blind"


def test_refresh_from_db_picks_up_the_new_version():
    article = Article.objects.create(title="a")
    changed_elsewhere(article, title="theirs")

    article.refresh_from_db()
    assert (article.title, article.version) == ("theirs", 2)
    article.title = "mine"
    article.save()

    assert Article.objects.values_list("title", "version").get(pk=article.pk) == ("mine", 3)


def test_queryset_update_bypasses_the_version():
    article = Article.objects.create(title="a")

    Article.objects.filter(pk=article.pk).update(title="bulk")
    assert Article.objects.get(pk=article.pk).version == 1
    article.save()  # so the instance's save does not see that change
    assert Article.objects.get(pk=article.pk).title == "a"

    Article.objects.filter(pk=article.pk).update(title="bumped", version=F("version") + 1)
    article.title = "mine"
    with pytest.raises(StaleObjectError):
        article.save()


def test_bulk_update_bypasses_the_version():
    article = Article.objects.create(title="a")
    changed_elsewhere(article, title="theirs")
    article.title = "bulk"

    Article.objects.bulk_update([article], ["title"])

    assert Article.objects.values_list("title", "version").get(pk=article.pk) == ("bulk", 2)


def test_deferred_version_is_refused_rather_than_reloaded():
    article = Article.objects.create(title="a")
    loaded = Article.objects.only("title").get(pk=article.pk)
    loaded.title = "b"

    with pytest.raises(ValueError, match="loaded without its version"):
        loaded.save()

    with_version = Article.objects.only("title", "version").get(pk=article.pk)
    with_version.title = "b"
    with_version.save()
    assert with_version.version == 2


def test_an_expression_as_version_is_refused():
    article = Article.objects.create(title="a")
    article.version = F("version") + 1

    with pytest.raises(TypeError, match="saving adds 1 itself"):
        article.save()


def test_the_version_an_instance_carries_is_the_one_checked():
    # What VersionField and VersionedModelForm rely on: a client's version,
    # set on a freshly read instance, is what the UPDATE requires.
    article = Article.objects.create(title="a")
    changed_elsewhere(article)
    fresh = Article.objects.get(pk=article.pk)
    fresh.version = 1  # the version the client read

    with pytest.raises(StaleObjectError):
        fresh.save()


def test_asave_is_versioned_too():
    from asgiref.sync import async_to_sync

    article = Article.objects.create(title="a")
    changed_elsewhere(article)

    with pytest.raises(StaleObjectError):
        async_to_sync(article.asave)()


def test_stale_save_in_its_own_atomic_block_leaves_the_outer_transaction_usable():
    article = Article.objects.create(title="a")
    changed_elsewhere(article)

    with transaction.atomic():
        try:
            with transaction.atomic():
                article.save()
        except StaleObjectError:
            article.refresh_from_db()
            article.title = "retried"
            article.save()

    assert Article.objects.values_list("title", "version").get(pk=article.pk) == ("retried", 3)


def test_raw_save_writes_a_fixture_as_it_is():
    article = Article.objects.create(title="a")
    changed_elsewhere(article)
    changed_elsewhere(article)
    fixture = serializers.serialize(
        "json", [Article(pk=article.pk, title="fixture", version=9, edited_at=timezone.now())]
    )

    for deserialized in serializers.deserialize("json", fixture):
        deserialized.save()

    assert Article.objects.values_list("title", "version").get(pk=article.pk) == ("fixture", 9)


# Deletion


def test_delete_adds_one_version_checking_statement_to_djangos(django_assert_num_queries):
    unversioned = Article.objects.create(title="by queryset")
    article = Article.objects.create(title="a")
    with CaptureQueriesContext(connection) as django_delete:
        models.Model.delete(unversioned)  # Django's own delete, without the check

    with django_assert_num_queries(len(django_delete) + 1) as captured:
        article.delete()

    check = captured.captured_queries[0]["sql"]
    assert check.startswith("UPDATE") and "version" in check.split("WHERE")[1]
    assert captured.captured_queries[-1]["sql"].startswith("DELETE")
    assert not Article.objects.exists()


def test_delete_of_a_stale_instance_raises_and_deletes_nothing():
    article = Article.objects.create(title="a")
    changed_elsewhere(article, title="theirs")

    with pytest.raises(StaleObjectError) as raised:
        article.delete()

    assert raised.value.expected_version == 1
    assert Article.objects.values_list("title", "version").get(pk=article.pk) == ("theirs", 2)


def test_queryset_delete_bypasses_the_version():
    article = Article.objects.create(title="a")
    changed_elsewhere(article)

    Article.objects.filter(pk=article.pk).delete()

    assert not Article.objects.exists()


# Multi-table inheritance and proxies


def test_multi_table_child_checks_the_version_in_the_parent_table(django_assert_num_queries):
    review = Review.objects.create(title="a", rating=1)
    assert review.version == 1
    review.rating = 2

    with django_assert_num_queries(2) as captured:
        review.save()

    parent_update = captured.captured_queries[0]["sql"]
    assert "testapp_article" in parent_update and "version" in parent_update.split("WHERE")[1]
    assert review.version == 2
    assert Review.objects.values_list("rating", "version").get(pk=review.pk) == (2, 2)


def test_stale_multi_table_child_writes_neither_table(django_assert_num_queries):
    review = Review.objects.create(title="a", rating=1)
    changed_elsewhere(review, rating=5)
    review.title = "mine"
    review.rating = 9

    with django_assert_num_queries(1), pytest.raises(StaleObjectError) as raised:
        review.save()

    assert raised.value.model is Review
    assert Review.objects.values_list("title", "rating", "version").get(pk=review.pk) == (
        "a",
        5,
        2,
    )


def test_multi_table_child_update_fields_of_the_child_only_still_checks_the_version():
    review = Review.objects.create(title="a", rating=1)
    changed_elsewhere(review, title="theirs")
    review.rating = 3

    with pytest.raises(StaleObjectError):
        review.save(update_fields=["rating"])

    fresh = Review.objects.get(pk=review.pk)
    fresh.rating = 3
    fresh.save(update_fields=["rating"])
    assert Review.objects.values_list("rating", "version").get(pk=review.pk) == (3, 3)


def test_stale_multi_table_child_is_not_deleted():
    review = Review.objects.create(title="a")
    changed_elsewhere(review)

    with pytest.raises(StaleObjectError):
        review.delete()

    assert Review.objects.filter(pk=review.pk).exists()
    Review.objects.get(pk=review.pk).delete()
    assert not Article.objects.filter(pk=review.pk).exists()


def test_proxy_saves_are_versioned():
    proxy = PublishedArticle.objects.create(title="a")
    proxy.save()
    assert proxy.version == 2
    changed_elsewhere(proxy)

    with pytest.raises(StaleObjectError) as raised:
        proxy.save()

    assert raised.value.model is PublishedArticle


@pytest.mark.django_db(transaction=True)
def test_one_statement_outside_a_transaction_too():
    # Autocommit: the conditional UPDATE is the whole save, no transaction
    # statements around it.
    article = Article.objects.create(title="a")
    with CaptureQueriesContext(connection) as captured:
        article.save()
    assert len(captured.captured_queries) == 1


def test_stale_save_leaves_the_enclosing_transaction_usable():
    # Nothing was written, so the atomic block is not marked for rollback.
    article = Article.objects.create(title="a")
    changed_elsewhere(article)

    with transaction.atomic():
        with pytest.raises(StaleObjectError):
            article.save()
        assert Article.objects.get(pk=article.pk).version == 2  # would raise if doomed
        assert not transaction.get_rollback()
