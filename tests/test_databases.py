"""Records in another database than the views' writes, and behind routers
(issue "Hardening", defect 11; contract section 5, ``DATABASE``).

Real second databases of the same kind: a second SQLite database, a second
PostgreSQL or MariaDB database on the same server.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, connections
from django.test import Client

from idempotency.keys import digest
from idempotency.models import IdempotencyRecord, Status
from idempotency.purge import purge_expired
from tests.conftest import atomic_requests_set
from tests.factories import IdempotencyRecordFactory
from tests.test_http import assert_problem, send
from tests.testapp.models import Charge

pytestmark = pytest.mark.django_db(databases=["default", "other"], transaction=True)


def records(alias: str) -> list[tuple[str, str]]:
    return list(IdempotencyRecord.objects.using(alias).values_list("key", "status"))


@pytest.fixture
def records_elsewhere(settings: Any) -> None:
    settings.IDEMPOTENCY = {"DATABASE": "other"}


def test_records_in_another_database_are_stored_after_the_views_commit(
    records_elsewhere: Any,
) -> None:
    with atomic_requests_set(True):
        assert send(Client(), key="elsewhere").status_code == 201

    assert records("other") == [(digest("elsewhere"), Status.COMPLETED)]
    assert records("default") == []
    assert Charge.objects.count() == 1
    with atomic_requests_set(True):
        assert send(Client(), key="elsewhere")["Idempotent-Replayed"] == "true"


@pytest.mark.skipif(
    connection.vendor == "mysql", reason="InnoDB checks foreign keys at once, never at COMMIT"
)
def test_a_failed_commit_of_the_views_database_is_never_replayed_as_a_success(
    records_elsewhere: Any,
) -> None:
    client = Client(raise_request_exception=False)
    with atomic_requests_set(True):
        failed = send(client, "/commit-fails/", key="lost")
        retry = send(client, "/commit-fails/", key="lost")

    # The view returned 201, then the default database's COMMIT failed: the
    # record must not say "completed", or the retry would replay a success.
    assert failed.status_code == 500
    assert Charge.objects.count() == 0
    assert records("other") == [(digest("lost"), Status.IN_PROGRESS)]
    assert_problem(retry, 409, "request-in-progress")  # until LOCK_TIMEOUT: then it runs again


class ReplicaRouter:
    """The records' reads go to a replica, writes to the primary, as a real
    setup routes them (the other apps stay on the primary)."""

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return "other" if model._meta.app_label == "idempotency" else None

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return "default"


def test_record_queries_never_go_to_a_replica_behind_a_router(
    settings: Any, admin_user: Any
) -> None:
    settings.DATABASE_ROUTERS = [f"{__name__}.ReplicaRouter"]
    client = Client()

    assert send(client, key="routed").status_code == 201
    assert send(client, key="routed")["Idempotent-Replayed"] == "true"
    assert_problem(send(client, body={"amount": 2}, key="routed"), 422, "key-reused")

    assert records("default") == [(digest("routed"), Status.COMPLETED)]
    assert records("other") == []
    client.force_login(admin_user)
    listed = client.get("/admin/idempotency/idempotencyrecord/")
    assert listed.status_code == 200
    assert digest("routed")[:12] in listed.content.decode()
    IdempotencyRecordFactory.create(expired=True, completed=True)  # through the router: default
    assert purge_expired() == 1
    assert connections["other"].vendor == connection.vendor
