"""transition(): one conditional UPDATE moves a state field; the winner gets True."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from idempotency.versioning import StaleObjectError, transition
from tests.testapp.models import Article, PublishedArticle, Review, Ticket

pytestmark = pytest.mark.django_db

State = Article.State


def test_instance_transition_wins_with_one_statement(django_assert_num_queries):
    article = Article.objects.create(title="a")

    with django_assert_num_queries(1) as captured:
        assert transition(article, "state", State.DRAFT, State.REVIEW) is True

    sql = captured.captured_queries[0]["sql"]
    assert sql.startswith("UPDATE")
    assert "state" in sql.split("WHERE")[1] and "version" in sql.split("WHERE")[1]
    assert (article.state, article.version) == (State.REVIEW, 2)
    assert Article.objects.values_list("state", "version").get(pk=article.pk) == ("review", 2)


def test_instance_transition_writes_only_the_state_and_the_version():
    article = Article.objects.create(title="a")
    article.title = "unsaved edit"

    transition(article, "state", State.DRAFT, State.REVIEW)

    assert Article.objects.get(pk=article.pk).title == "a"


def test_losing_instance_keeps_its_attribute_and_version():
    article = Article.objects.create(title="a")
    other = Article.objects.get(pk=article.pk)
    assert transition(other, "state", State.DRAFT, State.PUBLISHED)

    assert transition(article, "state", State.DRAFT, State.REVIEW) is False

    assert (article.state, article.version) == (State.DRAFT, 1)
    assert Article.objects.values_list("state", "version").get(pk=article.pk) == ("published", 2)


def test_losing_versioned_instance_costs_one_more_read(django_assert_num_queries):
    article = Article.objects.create(title="a")
    Article.objects.filter(pk=article.pk).update(state=State.ARCHIVED, version=2)

    with django_assert_num_queries(2):
        assert transition(article, "state", State.DRAFT, State.REVIEW) is False


def test_instance_transition_requires_the_version_it_was_read_at():
    article = Article.objects.create(title="a")
    edited = Article.objects.get(pk=article.pk)
    edited.title = "their edit"
    edited.save()  # the state is still draft, the version moved on

    with pytest.raises(StaleObjectError) as raised:
        transition(article, "state", State.DRAFT, State.REVIEW)

    assert (raised.value.model, raised.value.pk, raised.value.expected_version) == (
        Article,
        article.pk,
        1,
    )
    assert article.state == State.DRAFT
    assert Article.objects.values_list("state", "version").get(pk=article.pk) == ("draft", 2)
    article.refresh_from_db()
    assert transition(article, "state", State.DRAFT, State.REVIEW)


def test_instance_transition_of_a_deleted_row_is_stale():
    article = Article.objects.create(title="a")
    Article.objects.filter(pk=article.pk).delete()

    with pytest.raises(StaleObjectError):
        transition(article, "state", State.DRAFT, State.REVIEW)


def test_stale_transition_leaves_the_transaction_usable():
    article = Article.objects.create(title="a")
    Article.objects.filter(pk=article.pk).update(version=7)

    with transaction.atomic():
        with pytest.raises(StaleObjectError):
            transition(article, "state", State.DRAFT, State.REVIEW)
        assert Article.objects.filter(pk=article.pk).exists()


def test_source_may_be_a_collection():
    first = Article.objects.create(title="a", state=State.REVIEW)
    second = Article.objects.create(title="b", state=State.ARCHIVED)

    assert transition(first, "state", [State.DRAFT, State.REVIEW], State.PUBLISHED)
    assert transition(second, "state", {State.DRAFT, State.REVIEW}, State.PUBLISHED) is False
    assert second.state == State.ARCHIVED


def test_queryset_transition_is_one_statement_and_bumps_every_version(django_assert_num_queries):
    draft = Article.objects.create(title="a")
    review = Article.objects.create(title="b", state=State.REVIEW)
    published = Article.objects.create(title="c", state=State.PUBLISHED)

    with django_assert_num_queries(1):
        moved = transition(Article.objects.all(), "state", (State.DRAFT, State.REVIEW), "archived")

    assert moved is True
    rows = dict(Article.objects.values_list("pk", "version"))
    assert rows == {draft.pk: 2, review.pk: 2, published.pk: 1}
    assert set(Article.objects.values_list("state", flat=True)) == {"archived", "published"}


def test_queryset_transition_ignores_versions_but_makes_instances_stale():
    article = Article.objects.create(title="a")
    Article.objects.filter(pk=article.pk).update(version=5)

    assert transition(Article.objects.filter(pk=article.pk), "state", State.DRAFT, State.REVIEW)
    assert transition(Article.objects.filter(pk=article.pk), "state", State.DRAFT, "x") is False

    with pytest.raises(StaleObjectError):
        article.save()  # read at version 1; the row is at 6


def test_queryset_transition_that_matches_nothing_is_false(django_assert_num_queries):
    with django_assert_num_queries(1):
        assert transition(Article.objects.all(), "state", State.DRAFT, State.REVIEW) is False


def test_queryset_filtered_across_a_join_keeps_the_state_in_the_update():
    # Django rewrites such an UPDATE as "pk IN (...)", selected beforehand on
    # MySQL and MariaDB, which would drop the state from the UPDATE itself.
    author = User.objects.create(username="ann")
    article = Article.objects.create(title="a", author=author)
    Article.objects.create(title="b")

    with CaptureQueriesContext(connection) as captured:
        assert transition(Article.objects.filter(author__username="ann"), "state", "draft", "x")

    update = captured.captured_queries[-1]["sql"]
    assert update.startswith("UPDATE") and "SELECT" not in update
    assert "state" in update.split("WHERE")[1]
    assert list(Article.objects.filter(state="x").values_list("pk", flat=True)) == [article.pk]


def test_plain_model_instance_and_queryset():
    ticket = Ticket.objects.create()

    assert transition(ticket, "state", "open", "closed") is True
    assert ticket.state == "closed"
    assert transition(ticket, "state", "open", "closed") is False
    assert transition(Ticket.objects.all(), "state", "closed", "archived") is True
    assert ticket.state == "closed"  # a queryset transition does not touch instances


def test_losing_plain_instance_costs_no_extra_read(django_assert_num_queries):
    ticket = Ticket.objects.create(state="closed")

    with django_assert_num_queries(1):
        assert transition(ticket, "state", "open", "closed") is False


def test_none_is_a_state_like_any_other():
    ticket = Ticket.objects.create(state=None)

    assert transition(ticket, "state", [None, "open"], "closed")
    assert transition(Ticket.objects.all(), "state", None, "open") is False
    assert transition(ticket, "state", "closed", None)
    assert Ticket.objects.get(pk=ticket.pk).state is None


def test_multi_table_child_moves_a_parent_field():
    review = Review.objects.create(title="a", rating=1)

    assert transition(review, "state", State.DRAFT, State.REVIEW)
    assert (review.state, review.version) == (State.REVIEW, 2)
    assert Review.objects.values_list("state", "version").get(pk=review.pk) == ("review", 2)


def test_multi_table_child_field_and_parent_version_are_refused():
    review = Review.objects.create(title="a", rating=1)

    with pytest.raises(ValueError, match="different tables"):
        transition(review, "rating", 1, 2)


def test_queryset_of_a_child_moving_a_parent_column_is_refused():
    with pytest.raises(ValueError, match="pass a queryset of Article"):
        transition(Review.objects.all(), "state", State.DRAFT, State.REVIEW)


def test_proxy_instance_and_queryset():
    proxy = PublishedArticle.objects.create(title="a")

    assert transition(proxy, "state", State.DRAFT, State.PUBLISHED)
    assert proxy.version == 2
    assert transition(PublishedArticle.objects.all(), "state", State.PUBLISHED, State.ARCHIVED)


@pytest.mark.parametrize(
    ("field", "source", "to", "message"),
    [
        ("nope", "draft", "review", "not a concrete"),
        ("id", 1, 2, "not a concrete"),
        ("version", 1, 2, "not a concrete"),
        ("state", [], "review", "source is empty"),
        ("state", ["draft", "review"], "review", "also a source state"),
    ],
)
def test_misuse_is_refused(field, source, to, message):
    article = Article.objects.create(title="a")

    with pytest.raises(ValueError, match=message):
        transition(article, field, source, to)


def test_unsaved_instance_is_refused():
    with pytest.raises(ValueError, match="save it first"):
        transition(Article(title="a"), "state", State.DRAFT, State.REVIEW)


def test_other_targets_are_refused():
    with pytest.raises(TypeError, match="a model instance or a queryset"):
        transition([Article()], "state", State.DRAFT, State.REVIEW)
