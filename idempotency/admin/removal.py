"""The one way the admin removes a record: a versioned, lock-respecting DELETE.

Contract section 1: removing a record, by any button, is the versioned
release, and a record whose lock is live is never removed. Each record is
removed by one conditional statement,

    DELETE ... WHERE id = %s AND version = <the version the user confirmed>
               AND NOT (status = 'in_progress' AND locked_until > <database now>)

so the decision is the database's, taken atomically with the delete: a
record completed or taken over since the confirmation has another version,
and a request still running holds a live lock. Nothing is read first to decide.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from django.db import connections

from idempotency.models import IdempotencyRecord, Status
from idempotency.stores.dialects import dialect_for


class Kept(enum.Enum):
    """Why a record the user confirmed was not removed."""

    RUNNING = "running"  # in progress under a live lock
    CHANGED = "changed"  # another version than the one confirmed
    GONE = "gone"  # removed by someone else (or never there)


@dataclass
class Removal:
    removed: list[int] = field(default_factory=list)
    kept: dict[int, Kept] = field(default_factory=dict)


def remove(alias: str, confirmed: Mapping[int, int]) -> Removal:
    """Remove each record ``{id: version}`` that still has that version and no live lock.

    The caller holds the transaction (the admin writes its LogEntry rows in it).
    """
    connection = connections[alias]
    quote = connection.ops.quote_name
    table = quote(IdempotencyRecord._meta.db_table)
    c = {f.name: quote(str(f.column)) for f in IdempotencyRecord._meta.concrete_fields}
    now = dialect_for(connection.vendor).now
    sql = (
        f"DELETE FROM {table} WHERE {c['id']} = %s AND {c['version']} = %s "
        f"AND NOT ({c['status']} = %s AND {c['locked_until']} IS NOT NULL "
        f"AND {c['locked_until']} > {now})"
    )
    removal = Removal()
    with connection.cursor() as cursor:
        for record_id, version in sorted(confirmed.items()):
            cursor.execute(sql, [record_id, version, Status.IN_PROGRESS.value])
            if cursor.rowcount == 1:
                removal.removed.append(record_id)
    left = [record_id for record_id in confirmed if record_id not in removal.removed]
    removal.kept = _reasons(alias, left, confirmed)
    return removal


def _reasons(alias: str, ids: Iterable[int], confirmed: Mapping[int, int]) -> dict[int, Kept]:
    """Why each of ``ids`` was kept: read after the fact, for the message only."""
    ids = list(ids)
    if not ids:
        return {}
    rows = IdempotencyRecord.objects.using(alias).filter(pk__in=ids).values_list("pk", "version")
    versions = dict(rows)
    return {
        record_id: (
            Kept.GONE
            if record_id not in versions
            else Kept.CHANGED
            if versions[record_id] != confirmed[record_id]
            else Kept.RUNNING
        )
        for record_id in ids
    }


def confirmed_versions(values: Iterable[str]) -> dict[int, int]:
    """``["12:3", ...]`` from a confirmation page -> ``{12: 3}``; junk is ignored."""
    confirmed = {}
    for value in values:
        record_id, _, version = value.partition(":")
        if record_id.isdigit() and version.isdigit():
            confirmed[int(record_id)] = int(version)
    return confirmed
