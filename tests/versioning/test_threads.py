"""Real threads, each with its own connection, racing for one row.

Collected on every database and skipped on SQLite, which serialises writers
on one file lock: a race there proves nothing.
"""

from __future__ import annotations

import copy
import os
from collections import Counter

import pytest
from django.db import connection

from idempotency.versioning import StaleObjectError, transition
from tests.concurrency.race import REQUESTS, ROUNDS, run_together
from tests.testapp.models import Article
from tests.versioning.conftest import TALLIES

pytestmark = [
    pytest.mark.concurrency,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        os.environ.get("IDEMPOTENCY_TEST_DB", "sqlite") == "sqlite",
        reason="SQLite serialises writers on one file lock, so threads cannot race for a row",
    ),
]

State = Article.State


def outcome(call):
    def run():
        try:
            return "won" if call() is not False else "lost"
        except StaleObjectError:
            return "stale"

    return run


def record(label, tally):
    TALLIES.append(f"{label} ({connection.vendor}): {dict(sorted(tally.items()))}")


def test_sixteen_threads_transition_one_row_through_a_queryset_exactly_one_wins():
    for _ in range(ROUNDS):
        article = Article.objects.create(title="race")
        calls = [
            outcome(
                lambda pk=article.pk: transition(
                    Article.objects.filter(pk=pk), "state", State.DRAFT, State.PUBLISHED
                )
            )
            for _ in range(REQUESTS)
        ]

        tally = Counter(run_together(calls))

        assert tally == {"won": 1, "lost": REQUESTS - 1}
        assert Article.objects.values_list("state", "version").get(pk=article.pk) == (
            "published",
            2,
        )
    record("transition of one row, queryset", tally)


def test_sixteen_threads_transition_their_copies_of_one_instance_exactly_one_wins():
    for _ in range(ROUNDS):
        article = Article.objects.create(title="race")
        copies = [copy.copy(article) for _ in range(REQUESTS)]
        calls = [
            outcome(lambda mine=mine: transition(mine, "state", State.DRAFT, State.PUBLISHED))
            for mine in copies
        ]

        tally = Counter(run_together(calls))

        # Every loser finds the state moved on: False, not StaleObjectError.
        assert tally == {"won": 1, "lost": REQUESTS - 1}
        assert [mine.state for mine in copies].count(State.PUBLISHED) == 1
        assert Article.objects.get(pk=article.pk).version == 2
    record("transition of one row, instances", tally)


def test_sixteen_threads_save_one_version_exactly_one_save_succeeds():
    for _ in range(ROUNDS):
        article = Article.objects.create(title="race")
        copies = [copy.copy(article) for _ in range(REQUESTS)]
        for number, mine in enumerate(copies):
            mine.title = f"writer {number}"
        calls = [outcome(mine.save) for mine in copies]

        tally = Counter(run_together(calls))

        assert tally == {"won": 1, "stale": REQUESTS - 1}
        (winner,) = [mine for mine in copies if mine.version == 2]
        assert Article.objects.values_list("title", "version").get(pk=article.pk) == (
            winner.title,
            2,
        )
    record("save of one version", tally)


def test_sixteen_threads_delete_or_save_one_version_exactly_one_succeeds():
    for _ in range(ROUNDS):
        article = Article.objects.create(title="race")
        copies = [copy.copy(article) for _ in range(REQUESTS)]
        calls = [
            outcome(mine.delete if number % 2 else mine.save) for number, mine in enumerate(copies)
        ]

        tally = Counter(run_together(calls))

        assert tally == {"won": 1, "stale": REQUESTS - 1}
        survivors = list(Article.objects.filter(pk=article.pk).values_list("version", flat=True))
        assert survivors in ([], [2])
    record("save or delete of one version", tally)
