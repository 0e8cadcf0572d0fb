"""A commit that fails after the view returned is the store's failure, not the view's.

PostgreSQL only (collected only there, see tests/conftest.py): a deferred
constraint trigger makes the real COMMIT fail, once, with a serialization
failure or by terminating the connection. No mocks: this is what PostgreSQL
itself does when SERIALIZABLE transactions collide or the server goes away.
"""

from __future__ import annotations

import json

import pytest
from django.db import connection

from idempotency.models import IdempotencyRecord, Status
from tests.test_http import assert_problem, send
from tests.testapp.models import Charge

pytestmark = pytest.mark.django_db(transaction=True)

SERIALIZATION_FAILURE = 40001  # the Charge amount that makes the trigger raise 40001
CONNECTION_LOST = 57001  # the Charge amount that makes the trigger end its own backend


@pytest.fixture
def failing_commit():
    """A deferred trigger on the Charge table that fails the first COMMIT only.

    A sequence counts the commits it has seen: sequences are not rolled back,
    so a retry after the failed commit passes.
    """
    table = connection.ops.quote_name(Charge._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute("CREATE SEQUENCE idempotency_test_commits")
        cursor.execute(f"""
            CREATE FUNCTION idempotency_test_fail_commit() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                IF nextval('idempotency_test_commits') = 1 THEN
                    IF NEW.amount = {SERIALIZATION_FAILURE} THEN
                        RAISE EXCEPTION 'commit-time conflict' USING ERRCODE = '40001';
                    ELSIF NEW.amount = {CONNECTION_LOST} THEN
                        PERFORM pg_terminate_backend(pg_backend_pid());
                    END IF;
                END IF;
                RETURN NULL;
            END $$
        """)
        cursor.execute(f"""
            CREATE CONSTRAINT TRIGGER idempotency_test_fail_commit
            AFTER INSERT ON {table} DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW EXECUTE FUNCTION idempotency_test_fail_commit()
        """)
    yield
    connection.close()  # the terminated connection, if any, is not reused
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER idempotency_test_fail_commit ON {table}")
        cursor.execute("DROP FUNCTION idempotency_test_fail_commit()")
        cursor.execute("DROP SEQUENCE idempotency_test_commits")


def test_a_serialization_failure_at_commit_is_a_409_and_the_retry_runs(client, failing_commit):
    body = {"amount": SERIALIZATION_FAILURE}

    first = send(client, "/plain/", body, key="commit-conflict")

    assert_problem(first, 409, "request-in-progress")
    assert first["Retry-After"] == "1"
    assert Charge.objects.count() == 0
    assert not IdempotencyRecord.objects.exists()  # released

    retry = send(client, "/plain/", body, key="commit-conflict")

    assert retry.status_code == 201
    assert Charge.objects.count() == 1
    assert IdempotencyRecord.objects.get().status == Status.COMPLETED


def test_a_connection_lost_at_commit_is_a_503_and_the_retry_runs(client, failing_commit):
    body = {"amount": CONNECTION_LOST}

    first = send(client, "/plain/", body, key="commit-lost")

    assert_problem(first, 503, "store-unavailable")
    assert first["Retry-After"] == "5"
    assert Charge.objects.count() == 0
    # Django closed the dead connection when the commit failed, so the
    # release reconnected and went through: nothing waits for LOCK_TIMEOUT.
    assert not IdempotencyRecord.objects.exists()

    retry = send(client, "/plain/", body, key="commit-lost")

    assert retry.status_code == 201
    assert json.loads(retry.content)["amount"] == CONNECTION_LOST
    assert Charge.objects.count() == 1
    record = IdempotencyRecord.objects.get()
    assert (record.status, record.version) == (Status.COMPLETED, 2)
