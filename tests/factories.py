"""Factories for records, with traits for the states a record can be in.

The package writes its times with the database's clock; the factories use
``timezone.now()``, which in the tests is the same machine's clock. Tests that
depend on the exact boundary set times with SQL relative to the database clock
instead (see ``tests/test_store.py``).
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import factory
from django.utils import timezone

from idempotency.models import IdempotencyRecord, Status

TTL = timedelta(hours=24)
LOCK_TIMEOUT = timedelta(seconds=60)


class IdempotencyRecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IdempotencyRecord

    class Params:
        completed = factory.Trait(
            status=Status.COMPLETED,
            locked_until=None,
            version=2,
            response_status=201,
            response_headers=factory.LazyFunction(lambda: {"Content-Type": "application/json"}),
            response_body=factory.LazyFunction(lambda: json.dumps({"id": 1}).encode()),
        )
        expired = factory.Trait(
            created_at=factory.LazyFunction(lambda: timezone.now() - TTL - timedelta(hours=1)),
            expires_at=factory.LazyFunction(lambda: timezone.now() - timedelta(hours=1)),
        )
        lock_expired = factory.Trait(
            status=Status.IN_PROGRESS,
            locked_until=factory.LazyFunction(lambda: timezone.now() - timedelta(minutes=1)),
        )
        # In progress under a lock that expired more than TTL ago (its worker
        # died), with an expiry still ahead, as a view with a 30-day ttl has.
        stale = factory.Trait(
            status=Status.IN_PROGRESS,
            created_at=factory.LazyFunction(lambda: timezone.now() - TTL - timedelta(hours=2)),
            locked_until=factory.LazyFunction(lambda: timezone.now() - TTL - timedelta(hours=1)),
            expires_at=factory.LazyFunction(lambda: timezone.now() + timedelta(days=29)),
        )

    scope = "anonymous"
    key = factory.Sequence(lambda n: f"key-{n}")
    fingerprint = factory.Sequence(lambda n: hashlib.sha256(f"request-{n}".encode()).hexdigest())
    status = Status.IN_PROGRESS
    method = "POST"
    path = "/plain/"
    response_status = None
    response_headers = factory.LazyFunction(dict)
    response_body = None
    version = 1
    created_at = factory.LazyFunction(timezone.now)
    locked_until = factory.LazyAttribute(lambda record: record.created_at + LOCK_TIMEOUT)
    expires_at = factory.LazyAttribute(lambda record: record.created_at + TTL)
