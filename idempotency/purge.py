"""Purging expired records: what cron, Celery beat and the command call."""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction

from idempotency.conf import idempotency_settings
from idempotency.models import IdempotencyRecord
from idempotency.stores.dialects import DatabaseNow

DEFAULT_BATCH_SIZE = 1000


def purge_expired(
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    using: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Delete records past their ``expires_at``; return how many went.

    Deletes by primary-key slices, one short transaction per batch, so a purge
    of millions of rows neither holds long locks nor loads them into memory.
    ``progress`` is called with the running total after each batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    alias = using or idempotency_settings.DATABASE
    records = IdempotencyRecord.objects.using(alias)
    if dry_run:
        return records.filter(expires_at__lte=DatabaseNow()).count()
    total = 0
    while True:
        with transaction.atomic(using=alias):
            batch = list(
                records.filter(expires_at__lte=DatabaseNow())
                .order_by("pk")
                .values_list("pk", flat=True)[:batch_size]
            )
            if not batch:
                return total
            # Expiry is checked again: a batch member may have been reused since.
            deleted, _ = records.filter(pk__in=batch, expires_at__lte=DatabaseNow()).delete()
        total += deleted
        if progress is not None:
            progress(total)
