from __future__ import annotations

from django.db import models

from idempotency.versioning import VersionedModel


class Charge(models.Model):
    """A side effect the test views write, so tests can count executions."""

    amount = models.IntegerField()
    label = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)


class Article(VersionedModel):
    """A versioned model for tests/versioning."""

    class State(models.TextChoices):
        DRAFT = "draft"
        REVIEW = "review"
        PUBLISHED = "published"
        ARCHIVED = "archived"

    title = models.CharField(max_length=100)
    body = models.TextField(blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.DRAFT)
    edited_at = models.DateTimeField(auto_now=True)
    author = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return self.title


class Review(Article):
    """Multi-table inheritance: the version lives in the parent's table."""

    rating = models.IntegerField(default=0)


class PublishedArticle(Article):
    class Meta:
        proxy = True


class Note(VersionedModel):
    """Edited in the admin as an inline of its article (tests/versioning/test_admin_inlines.py)."""

    article = models.ForeignKey(Article, on_delete=models.CASCADE, related_name="notes")
    text = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.text


class Ticket(models.Model):
    """Not versioned: transition() on a plain model."""

    state = models.CharField(max_length=16, null=True, default="open")
