from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from idempotency.fields import KEY_LENGTH, SCOPE_LENGTH, ExactCharField
from idempotency.indexes import PrefixSearchIndex
from idempotency.keys import shown


class Status(models.TextChoices):
    IN_PROGRESS = "in_progress", _("in progress")
    COMPLETED = "completed", _("completed")


class IdempotencyRecord(models.Model):
    """One idempotency key of one scope: its claim, lock and stored response.

    Rows are written only by ``idempotency.stores.database`` with versioned
    SQL; times come from the database's clock, never the app server's.
    """

    scope = ExactCharField(max_length=SCOPE_LENGTH)
    key = ExactCharField(max_length=KEY_LENGTH)
    fingerprint = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IN_PROGRESS)
    method = models.CharField(max_length=16)
    path = models.TextField()
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    # NULL on a completed record: the response was passed through, not kept.
    response_body = models.BinaryField(null=True, blank=True)
    # The response (headers and body) is encrypted under a key derived from the
    # idempotency key: only a retry that presents the key can read it.
    sensitive = models.BooleanField(default=False, db_default=False)
    version = models.PositiveIntegerField(default=1)
    locked_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        verbose_name = _("idempotency record")
        verbose_name_plural = _("idempotency records")
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="idempotency_scope_key_uniq"),
        ]
        indexes = [
            models.Index(fields=["expires_at"], name="idempotency_expires_at_idx"),
            # For the admin's search by key and by path prefix. Neither column
            # changes when a request completes: an index on a column that the
            # completion UPDATE writes (status, response_*, version,
            # locked_until) would cost that UPDATE its HOT eligibility on
            # PostgreSQL (docs/admin.md, Performance).
            models.Index(fields=["key"], name="idempotency_key_idx"),
            PrefixSearchIndex(fields=["path"], name="idempotency_path_idx"),
        ]
        permissions = [
            ("view_response_body", _("Can view stored response bodies")),
        ]

    def __str__(self) -> str:
        # The key is a bearer secret: only the start of its digest, as logs show it.
        return f"{self.scope} {shown(self.key)}"
