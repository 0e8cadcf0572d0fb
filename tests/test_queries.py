"""The query budget: what the package adds to a request, statement by statement.

Transaction control (BEGIN, COMMIT, SAVEPOINT, ...) is left out: its count
depends on the backend and on whether the test runs inside a transaction.
Every other statement is named by its verb and the table it touches, so the
package's statements and the view's own are told apart.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from idempotency.conf import idempotency_settings
from idempotency.models import IdempotencyRecord, Status
from tests.testapp.models import Charge

# Outside a test transaction, so that each request runs as in production: in
# autocommit, or inside ATOMIC_REQUESTS' transaction.
pytestmark = pytest.mark.django_db(transaction=True)

TRANSACTION_CONTROL = re.compile(
    r"^\s*(SAVEPOINT|RELEASE SAVEPOINT|ROLLBACK TO SAVEPOINT|BEGIN|COMMIT|ROLLBACK)\b",
    re.IGNORECASE,
)
LEADING_BEGIN = re.compile(r"^\s*BEGIN;\s*", re.IGNORECASE)
TABLES = {IdempotencyRecord._meta.db_table: "record", Charge._meta.db_table: "charge"}

CLAIM = ("INSERT", "record")
NEW_KEY = [CLAIM, ("INSERT", "charge"), ("UPDATE", "record")]
# On PostgreSQL one statement claims the key or reads its record (a CTE).
CLAIM_AND_READ = [CLAIM] if connection.vendor == "postgresql" else [CLAIM, ("SELECT", "record")]
READ = [("SELECT", "record")]
# MariaDB inside an enclosing transaction reads first, so that a duplicate
# never waits on an uncommitted row (tests/concurrency/test_waiting_duplicates.py).
READ_FIRST = connection.vendor == "mysql"
DATA_MODIFYING_CTE = re.compile(r"^\s*WITH\s+\w+\s+AS\s+\(\s*(INSERT|UPDATE|DELETE)\b", re.I)


def statements(client, method, path, body=None, key=None):
    """The response and the (verb, table) of each statement it cost."""
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    records = connections[idempotency_settings.DATABASE]
    with CaptureQueriesContext(records) as captured:
        if method == "get":
            response = client.get(path, **headers)
        else:
            response = getattr(client, method)(
                path, json.dumps(body or {}), content_type="application/json", **headers
            )
    # PostgreSQL's claim message opens with its own BEGIN.
    sqls = [LEADING_BEGIN.sub("", query["sql"]) for query in captured.captured_queries]
    return response, [_name(sql) for sql in sqls if not TRANSACTION_CONTROL.match(sql)]


# PostgreSQL's store calls its two functions (migration 0004).
FUNCTIONS = {"idempotency_claim_v1": CLAIM, "idempotency_complete_v1": ("UPDATE", "record")}


def _name(sql):
    for function, name in FUNCTIONS.items():
        if function in sql:
            return name
    sql = re.sub(r"^\s*SET STATEMENT .*? FOR ", "", sql)  # MariaDB's per-statement lock wait
    cte = DATA_MODIFYING_CTE.match(sql)
    verb = cte.group(1).upper() if cte else sql.split(None, 1)[0].upper()
    tables = {name for table, name in TABLES.items() if table in sql}
    assert len(tables) <= 1, sql
    return verb, tables.pop() if tables else sql


def package(names):
    return [name for name in names if name[1] == "record"]


@pytest.mark.parametrize("path", ["/plain/", "/api-function/", "/viewset/", "/api-view/"])
def test_new_key_costs_the_view_its_insert_plus_claim_and_complete(client, atomic_requests, path):
    response, names = statements(client, "post", path, {"amount": 5}, key="new")

    assert response.status_code == 201
    expected = NEW_KEY if not (READ_FIRST and atomic_requests) else [("SELECT", "record"), *NEW_KEY]
    assert names == expected


@pytest.mark.parametrize("path", ["/plain/", "/viewset/"])
def test_replay_costs_claim_and_read_and_runs_no_view_query(client, path):
    statements(client, "post", path, {"amount": 5}, key="done")

    response, names = statements(client, "post", path, {"amount": 5}, key="done")

    assert response["Idempotent-Replayed"] == "true"
    assert names == CLAIM_AND_READ


def test_request_in_progress_409_costs_claim_and_read(client):
    statements(client, "post", "/plain/", {"amount": 5}, key="running")
    IdempotencyRecord.objects.update(
        status=Status.IN_PROGRESS, locked_until=timezone.now() + timedelta(hours=1)
    )

    response, names = statements(client, "post", "/plain/", {"amount": 5}, key="running")

    assert response.status_code == 409
    assert names == CLAIM_AND_READ


def test_key_reused_422_costs_claim_and_read(client):
    statements(client, "post", "/plain/", {"amount": 5}, key="reused")

    response, names = statements(client, "post", "/plain/", {"amount": 6}, key="reused")

    assert response.status_code == 422
    assert names == CLAIM_AND_READ


def test_released_response_costs_claim_and_release(client):
    response, names = statements(client, "post", "/plain/", {"status": 503}, key="released")

    assert response.status_code == 503
    assert package(names) == [CLAIM, ("DELETE", "record")]


def test_safe_method_costs_no_package_query(client):
    response, names = statements(client, "get", "/api-function/", key="ignored")

    assert response.status_code == 200
    assert names == [("SELECT", "charge")]


@pytest.mark.parametrize("path", ["/plain/", "/viewset/"])
def test_request_without_key_costs_no_package_query(client, path):
    response, names = statements(client, "post", path, {"amount": 5})

    assert response.status_code == 201
    assert names == [("INSERT", "charge")]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's notices")
@pytest.mark.parametrize("path", ["/plain/", "/viewset/"])
def test_the_server_warns_of_nothing_for_a_new_key_or_a_replay(client, path):
    """A COMMIT outside a transaction block costs a WARNING line in the
    server's log on every request: the claim's message must never send one."""
    records = connections[idempotency_settings.DATABASE]
    records.ensure_connection()
    notices = []
    records.connection.add_notice_handler(
        lambda notice: notices.append((notice.severity, notice.message_primary))
    )
    try:
        first, _ = statements(client, "post", path, {"amount": 5}, key="quiet")
        replay, _ = statements(client, "post", path, {"amount": 5}, key="quiet")
    finally:
        records.close()  # the handler goes with the connection

    assert (first.status_code, replay["Idempotent-Replayed"]) == (201, "true")
    assert notices == []
