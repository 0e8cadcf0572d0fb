"""Purging expired records: what cron, Celery beat and the command call.

A record goes when it is past its ``expires_at`` and no request is running
under a live lock on it, or when it is in progress under a lock that expired
more than ``TTL`` ago (its worker died). docs/purging.md explains both.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import DateTimeField, Expression, Q, QuerySet
from django.db.models.sql.compiler import SQLCompiler

from idempotency.conf import idempotency_settings
from idempotency.models import IdempotencyRecord, Status
from idempotency.stores.dialects import DatabaseNow, dialect_for

DEFAULT_BATCH_SIZE = 1000
# Far enough back for any retention policy, near enough that every backend
# can still compute the cutoff (a microsecond count that fits in 64 bits).
MAX_OLDER_THAN = timedelta(days=100 * 365)


class DatabaseNowMinus(Expression):
    """The database's clock minus a duration, in the store's dialect."""

    output_field = DateTimeField()

    def __init__(self, duration: timedelta) -> None:
        super().__init__()
        self.duration = duration

    def as_sql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper
    ) -> tuple[str, tuple[str | int, ...]]:
        dialect = dialect_for(connection.vendor)
        return dialect.now_plus, (dialect.offset(-self.duration),)


def purge_expired(
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    older_than: timedelta | None = None,
    using: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Delete expired records; return how many went (or, with ``dry_run``, would go).

    ``older_than`` keeps records that became purgeable less than that long
    ago. Deletes in batches of ``batch_size``, one statement and one
    transaction each, so a purge of millions of rows neither holds long locks nor
    loads them into memory; it therefore refuses to run inside
    ``transaction.atomic()`` (``RuntimeError``). ``progress`` is called with
    the running total after each committed batch. ``using`` defaults to
    ``IDEMPOTENCY["DATABASE"]``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number of at least 1, not {batch_size!r}.")
    older_than = older_than or timedelta(0)
    if not timedelta(0) <= older_than <= MAX_OLDER_THAN:
        raise ValueError(f"older_than must be between 0 and 100 years, not {older_than!r}.")
    alias = using or idempotency_settings.DATABASE
    records = IdempotencyRecord.objects.using(alias)
    expired, stale = _purgeable(older_than)
    if dry_run:
        return records.filter(expired | stale).count()
    total = 0
    # Expired records first, found through the expires_at index; then the
    # stale in-progress ones, whose expires_at may lie far in the future.
    for condition, order in ((expired, "expires_at"), (stale, "pk")):
        deleted = batch_size
        # A short batch means the condition had no more rows when it ran;
        # rows that become purgeable later wait for the next run.
        while deleted == batch_size:
            deleted = _delete_batch(records.filter(condition), order, batch_size, alias)
            total += deleted
            if deleted and progress is not None:
                progress(total)
    return total


def _purgeable(older_than: timedelta) -> tuple[Q, Q]:
    """The two conditions under which a record goes; either one suffices."""
    # Past its expiry, unless its request still runs under a live lock: that
    # request keeps its key past the TTL (docs/decisions.md).
    not_running = (
        Q(status=Status.COMPLETED)
        | Q(locked_until__isnull=True)
        | Q(locked_until__lte=DatabaseNow())
    )
    expired = Q(expires_at__lte=DatabaseNowMinus(older_than)) & not_running
    # In progress under a lock that expired more than TTL ago: its worker died
    # and no retry took it over, whatever the (per-view) expires_at says.
    stale = Q(
        status=Status.IN_PROGRESS,
        locked_until__lte=DatabaseNowMinus(idempotency_settings.TTL + older_than),
    )
    return expired, stale


def _delete_batch(
    candidates: QuerySet[IdempotencyRecord], order: str, batch_size: int, alias: str
) -> int:
    """Delete one batch in one statement, in its own transaction.

    The condition is checked in the same statement that deletes, so a record
    reused since it became a candidate is kept. _raw_delete, as Django's own
    fast path does: QuerySet.delete() would load every row, response bodies
    included, whenever some project connects a pre_delete or post_delete
    receiver.
    """
    # durable: each batch must commit on its own, or the locks of every batch
    # would be held until an outer transaction ends.
    with transaction.atomic(using=alias, durable=True):
        connection = connections[alias]
        if connection.vendor == "mysql":
            return _delete_ordered_limited(candidates, order, batch_size, alias)
        batch = candidates.order_by(order).values("pk")[:batch_size]
        return int(candidates.filter(pk__in=batch)._raw_delete(alias))


def _delete_ordered_limited(
    candidates: QuerySet[IdempotencyRecord], order: str, batch_size: int, alias: str
) -> int:
    # MariaDB refuses LIMIT inside an IN (subquery), but its single-table
    # DELETE takes ORDER BY and LIMIT itself.
    connection = connections[alias]
    query = candidates.query
    where, params = query.get_compiler(alias).compile(query.where)
    quote = connection.ops.quote_name
    meta = IdempotencyRecord._meta
    # The order is a field name whose column has the same name (no db_column).
    column = quote("id" if order == "pk" else order)
    sql = f"DELETE FROM {quote(meta.db_table)} WHERE {where} ORDER BY {column} LIMIT %s"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, batch_size])
        return int(cursor.rowcount)
