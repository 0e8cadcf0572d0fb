"""Purging expired records: what cron, Celery beat and the command call.

A record goes when it is past its ``expires_at`` and no request is running
under a live lock on it, or when it is in progress under a lock that expired
more than ``TTL`` ago (its worker died). docs/purging.md explains both.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import DateTimeField, Expression, Q, QuerySet
from django.db.models.sql.compiler import SQLCompiler

from idempotency.conf import idempotency_settings
from idempotency.models import IdempotencyRecord, Status
from idempotency.stores.dialects import DatabaseNow, dialect_for

DEFAULT_BATCH_SIZE = 10_000
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
    if connections[alias].vendor == "postgresql" and _mostly_expired(records, expired, alias):
        return _purge_by_pages(records.filter(expired | stale), batch_size, alias, progress)
    total = 0
    # The stale in-progress records first, whose expires_at may lie far in
    # the future: no index finds them, and the table is scanned faster before
    # the expired records become dead rows. Then the expired ones, found
    # through the expires_at index.
    for condition, order in ((stale, "pk"), (expired, "expires_at")):
        deleted, after = batch_size, None
        # A short batch means the condition had no more rows when it ran;
        # rows that become purgeable later wait for the next run.
        while deleted == batch_size:
            deleted, after = _delete_batch(
                records.filter(condition), order, batch_size, alias, after
            )
            total += deleted
            if deleted and progress is not None:
                progress(total)
    return total


# On PostgreSQL, when at least this share of the table is purgeable, it is
# read in order of its pages, as one DELETE would read it, rather than
# through the expires_at index.
MOSTLY_EXPIRED = 0.05


def _mostly_expired(records: QuerySet[IdempotencyRecord], expired: Q, alias: str) -> bool:
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT reltuples FROM pg_class WHERE oid = %s::regclass",
            [connections[alias].ops.quote_name(IdempotencyRecord._meta.db_table)],
        )
        row = cursor.fetchone()
    estimate = float(row[0]) if row else -1.0
    if estimate <= 0:  # never analyzed: a small table, the index path is as good
        return False
    enough = int(estimate * MOSTLY_EXPIRED) + 1
    # Counting stops at ``enough``: through the index, however large the table.
    return records.filter(expired).order_by()[:enough].count() >= enough


def _purge_by_pages(
    candidates: QuerySet[IdempotencyRecord],
    batch_size: int,
    alias: str,
    progress: Callable[[int], None] | None,
) -> int:
    """Delete page range by page range (TID range scans, PostgreSQL 14+).

    Each range holds about ``batch_size`` rows and is one statement in its
    own transaction; pages are read in order, as a single DELETE reads them,
    so the purge costs what one DELETE costs plus a commit per batch. The
    commits wait for no WAL flush: a batch lost in a crash is deleted again
    by the next purge. Pages added during the purge hold fresh records.
    """
    connection = connections[alias]
    table = connection.ops.quote_name(IdempotencyRecord._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int, "
            "reltuples, relpages FROM pg_class WHERE oid = %s::regclass",
            [table, table],
        )
        pages, tuples, counted_pages = cursor.fetchone()
    per_page = max(float(tuples) / counted_pages, 1.0) if counted_pages and tuples > 0 else 50.0
    step = max(int(batch_size / per_page), 1)
    query = candidates.query
    where, params = query.get_compiler(alias).compile(query.where)
    sql = f"DELETE FROM {table} WHERE ctid >= %s::tid AND ctid < %s::tid AND {where}"
    total = 0
    for first in range(0, int(pages), step):
        with transaction.atomic(using=alias, durable=True), connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO off")
            cursor.execute(sql, [f"({first},0)", f"({first + step},0)", *params])
            deleted = int(cursor.rowcount)
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
    candidates: QuerySet[IdempotencyRecord],
    order: str,
    batch_size: int,
    alias: str,
    after: Any = None,
) -> tuple[int, Any]:
    """Delete one batch in one statement, in its own transaction.

    The condition is checked in the same statement that deletes, so a record
    reused since it became a candidate is kept. _raw_delete, as Django's own
    fast path does: QuerySet.delete() would load every row, response bodies
    included, whenever some project connects a pre_delete or post_delete
    receiver. Returns how many went and, where the backend can say, the
    last ``order`` value reached, from which the next batch starts.
    """
    # durable: each batch must commit on its own, or the locks of every batch
    # would be held until an outer transaction ends.
    with transaction.atomic(using=alias, durable=True):
        connection = connections[alias]
        if connection.vendor == "mysql":
            return _delete_ordered_limited(candidates, order, batch_size, alias), None
        if connection.vendor == "postgresql":
            return _delete_by_tuple_id(candidates, order, batch_size, alias, after)
        batch = candidates.order_by(order).values("pk")[:batch_size]
        return int(candidates.filter(pk__in=batch)._raw_delete(alias)), None


def _delete_by_tuple_id(
    candidates: QuerySet[IdempotencyRecord], order: str, batch_size: int, alias: str, after: Any
) -> tuple[int, Any]:
    # The batch's rows are found through the expires_at index and deleted by
    # their tuple ids, not looked up again through the primary key; a row
    # updated meanwhile (its key reused) has another tuple id and is kept.
    # The batch's commit waits for no WAL flush: a batch lost in a crash is
    # simply deleted again by the next purge. Each batch starts where the last
    # one ended: the index entries of deleted rows stay until VACUUM, and
    # scanning past them from the start would make the purge quadratic.
    connection = connections[alias]
    query = candidates.query
    where, params = query.get_compiler(alias).compile(query.where)
    table = connection.ops.quote_name(IdempotencyRecord._meta.db_table)
    column = connection.ops.quote_name("id" if order == "pk" else order)
    start, start_params = ("", []) if after is None else (f" AND {column} >= %s", [after])
    sql = (
        f"WITH gone AS (DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} "
        f"WHERE {where}{start} ORDER BY {column} LIMIT %s)) AND {where} RETURNING {column}) "
        f"SELECT count(*), max({column}) FROM gone"
    )
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit TO off")
        cursor.execute(sql, [*params, *start_params, batch_size, *params])
        count, last = cursor.fetchone()
        return int(count), last if last is not None else after


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
