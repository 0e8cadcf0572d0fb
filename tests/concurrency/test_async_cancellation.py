"""An async view cancelled while a store unit runs in its worker thread (a
client that disconnects under ASGI: Django cancels the view's task).

The unit runs on in its thread whatever happens to the task: a claim that
acquires the key after the cancellation must still be released, and the
transaction it opened rolled back, or the key stays locked until
LOCK_TIMEOUT and the connection is left inside a transaction.
"""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection, transaction
from django.test import AsyncClient
from django.utils import timezone

from idempotency.keys import digest
from idempotency.models import IdempotencyRecord
from tests.concurrency.race import closing_connection
from tests.testapp.models import Charge

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]

KEY = "cancelled-while-claiming"


def claims_waiting() -> int:
    """Sessions of this test database whose claim waits on a row lock."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            )
        else:
            cursor.execute(
                "SELECT count(*) FROM information_schema.processlist WHERE db = DATABASE() "
                "AND command = 'Query' AND info LIKE 'INSERT IGNORE INTO %%'"
            )
        return int(cursor.fetchone()[0])


def hold_the_key_uncommitted(held: threading.Event, release: threading.Event) -> None:
    """Another transaction inserts the same (scope, key) and keeps it
    uncommitted, so the view's claim waits on its row; then rolls back."""
    with transaction.atomic():
        IdempotencyRecord.objects.create(
            scope="anonymous", key=digest(KEY), fingerprint="0" * 64, method="POST",
            path="/elsewhere/", created_at=timezone.now(),
            locked_until=timezone.now() + timedelta(minutes=1),
            expires_at=timezone.now() + timedelta(days=1),
        )  # fmt: skip
        held.set()
        assert release.wait(60), "the test never released the key"
        transaction.set_rollback(True)


def test_an_async_view_cancelled_during_its_claim_releases_the_key_it_acquired() -> None:
    held, release = threading.Event(), threading.Event()
    holder = threading.Thread(
        target=closing_connection(lambda: hold_the_key_uncommitted(held, release))
    )
    holder.start()
    try:
        assert held.wait(30)

        async def cancel_while_claiming() -> Any:
            view = asyncio.ensure_future(AsyncClient().post(
                "/async-charge/", json.dumps({"amount": 5}), content_type="application/json",
                headers={"Idempotency-Key": KEY},
            ))  # fmt: skip
            waiting = sync_to_async(closing_connection(claims_waiting), thread_sensitive=False)
            for _ in range(3000):  # the claim is sent within a few ms; bounded at 30 s
                if await waiting():
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the view's claim never waited on the held row")
            view.cancel()  # the client went away while the claim waits
            release.set()  # the holder rolls back: the claim acquires the key
            with pytest.raises(asyncio.CancelledError):
                await view

        async_to_sync(cancel_while_claiming)()
    finally:
        release.set()
        holder.join(60)

    assert not connection.in_atomic_block, "the claim's transaction was left open"
    assert not IdempotencyRecord.objects.filter(key=digest(KEY)).exists()
    assert Charge.objects.count() == 0
