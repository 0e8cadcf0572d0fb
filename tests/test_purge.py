from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from idempotency.models import IdempotencyRecord
from idempotency.purge import purge_expired
from tests.factories import IdempotencyRecordFactory

pytestmark = pytest.mark.django_db


def _expire_all_but(keep: IdempotencyRecord) -> None:
    # Time as data: expiry is moved relative to the database's own clock.
    table = connection.ops.quote_name(IdempotencyRecord._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET expires_at = created_at WHERE id <> %s", [keep.pk])


def test_purge_deletes_only_expired_records_in_batches():
    live = IdempotencyRecordFactory()
    IdempotencyRecordFactory.create_batch(7, expired=True)
    totals: list[int] = []

    deleted = purge_expired(batch_size=3, progress=totals.append)

    assert deleted == 7
    assert totals == [3, 6, 7]
    assert list(IdempotencyRecord.objects.all()) == [live]


def test_purge_uses_the_database_clock():
    live = IdempotencyRecordFactory()
    other = IdempotencyRecordFactory(created_at=timezone.now() - timedelta(hours=1))
    _expire_all_but(live)

    assert purge_expired() == 1
    assert not IdempotencyRecord.objects.filter(pk=other.pk).exists()


def test_purge_dry_run_counts_and_deletes_nothing():
    IdempotencyRecordFactory.create_batch(2, expired=True)
    IdempotencyRecordFactory()

    assert purge_expired(dry_run=True) == 2
    assert IdempotencyRecord.objects.count() == 3


def test_purge_command_reports_what_it_removed(capsys):
    IdempotencyRecordFactory.create_batch(3, expired=True)

    call_command("purge_idempotency_keys", "--dry-run")
    call_command("purge_idempotency_keys", "--batch-size", "2")
    call_command("purge_idempotency_keys", verbosity=0)

    assert capsys.readouterr().out.splitlines() == [
        "3 expired idempotency records would be deleted.",
        "Deleted 3 expired idempotency records.",
    ]
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.parametrize("size", ["0", "-5"])
def test_purge_command_refuses_a_batch_size_below_one(size):
    with pytest.raises(CommandError, match="--batch-size"):
        call_command("purge_idempotency_keys", "--batch-size", size)
