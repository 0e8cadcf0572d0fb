"""The stores at their edges: a request superseded while its records live on
another database, principals whose pk does not fit a scope, and request paths
a text column refuses (review 89)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from django.db import connections
from django.http import JsonResponse
from django.test import Client
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from rest_framework import permissions, viewsets
from rest_framework.authentication import BaseAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from idempotency import idempotent
from idempotency.drf import IdempotencyMixin
from idempotency.models import IdempotencyRecord, Status
from tests.testapp.models import Charge

pytestmark = pytest.mark.django_db

runs: list[str] = []


@pytest.fixture(autouse=True)
def fresh_runs() -> None:
    runs.clear()


# ------------------------------------------------------------------ views


class Principal:
    """A principal that is not a model (a service account a project's
    authentication class returns), as docs/security.md's scopes describe."""

    is_authenticated = True

    def __init__(self, pk: str) -> None:
        self.pk = pk


class HeaderAuthentication(BaseAuthentication):
    def authenticate(self, request: Any) -> tuple[Principal, None] | None:
        who = request.headers.get("X-Who")
        return (Principal(who), None) if who else None


class ServicePay(IdempotencyMixin, APIView):
    authentication_classes = [HeaderAuthentication]
    permission_classes = [permissions.IsAuthenticated]

    def post(self, request: Any) -> Response:
        runs.append("service")
        return Response({"ok": True}, status=201)


class Payments(IdempotencyMixin, viewsets.ViewSet):
    permission_classes = [permissions.AllowAny]

    def partial_update(self, request: Any, pk: str | None = None) -> Response:
        runs.append("partial")
        return Response({"pk": pk}, status=200)


@csrf_exempt
@idempotent
def superseded_while_running(request: Any) -> JsonResponse:
    """Writes, then loses its lock: another worker takes the record over
    (its version moves on, through another connection) before this returns."""
    Charge.objects.create(amount=1, label="superseded")
    taker = connections.create_connection("other")
    try:
        with taker.cursor() as cursor:
            table = taker.ops.quote_name(IdempotencyRecord._meta.db_table)
            cursor.execute(f"UPDATE {table} SET version = version + 1")
        taker.commit() if not taker.get_autocommit() else None
    finally:
        taker.close()
    runs.append("superseded")
    return JsonResponse({"ok": True}, status=201)


urlpatterns = [
    path("superseded/", superseded_while_running),
    path("service/", ServicePay.as_view()),
    path("payments/<pk>/", Payments.as_view({"patch": "partial_update"})),
]


# ------------------------------------------------------------------ tests


@pytest.mark.urls(__name__)
@pytest.mark.django_db(databases=["default", "other"], transaction=True)
def test_a_superseded_request_with_records_elsewhere_commits_nothing(settings: Any) -> None:
    # Contract section 3, lock expired row: the first worker, back after a
    # takeover, "neither overwrites the record nor commits its own database
    # writes". Records on "other", ATOMIC_REQUESTS on the views' database.
    from tests.conftest import atomic_requests_set

    settings.IDEMPOTENCY = {"DATABASE": "other"}
    with atomic_requests_set(True):
        response = Client(raise_request_exception=False).post(
            "/superseded/", "{}", content_type="application/json",
            headers={"Idempotency-Key": "superseded-1"},
        )  # fmt: skip

    assert runs == ["superseded"]
    assert response.status_code == 409, response.content[:300]
    assert Charge.objects.count() == 0
    record = IdempotencyRecord.objects.using("other").get()
    assert record.status == Status.IN_PROGRESS  # the taker's, untouched


@pytest.mark.urls(__name__)
def test_a_principal_with_a_long_pk_gets_its_own_scope_not_a_500() -> None:
    client = Client(raise_request_exception=False)

    def send(who: str) -> Any:
        return client.post("/service/", "{}", content_type="application/json",
                           headers={"Idempotency-Key": "svc-1", "X-Who": who})  # fmt: skip

    first = send("a" * 300)
    assert first.status_code == 201, first.content[:300]
    assert send("a" * 300)["Idempotent-Replayed"] == "true"
    assert send("b" * 300).status_code == 201  # another principal: its own record
    assert runs == ["service", "service"]


@pytest.mark.urls(__name__)
def test_a_principal_pk_cannot_forge_fields_of_the_idempotency_log_lines(caplog: Any) -> None:
    caplog.set_level("INFO", logger="idempotency")
    client = Client(raise_request_exception=False)
    forged = "1 key=000000000000\nCRITICAL idempotency forged line"

    for _ in range(2):
        client.post("/service/", "{}", content_type="application/json",
                    headers={"Idempotency-Key": "svc-2", "X-Who": forged})  # fmt: skip

    lines = [record.getMessage() for record in caplog.records if record.name == "idempotency"]
    assert lines, "the replay was not logged"
    assert all(line.isprintable() for line in lines), lines
    assert all(record.scope.isprintable() for record in IdempotencyRecord.objects.all())
    assert runs == ["service"]


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("store", ["database", "redis"])
def test_a_path_with_nul_is_answered_and_stored_escaped_not_a_500(
    store: str, settings: Any
) -> None:
    # %00 decodes to NUL in request.path, which the <pk> converter accepts;
    # PostgreSQL refuses NUL in a text column.
    from tests.stores.conftest import redis_store_in

    client = Client(raise_request_exception=False)

    def patch() -> Any:
        return client.patch("/payments/%00/", "{}", content_type="application/json",
                            headers={"Idempotency-Key": "nul-path"})  # fmt: skip

    with contextlib.ExitStack() as stack:
        backend = stack.enter_context(redis_store_in(settings)) if store == "redis" else None
        first, second = patch(), patch()

        assert first.status_code == 200, first.content[:300]
        assert second["Idempotent-Replayed"] == "true"
        assert runs == ["partial"]
        if backend is None:
            stored = IdempotencyRecord.objects.get().path
        else:
            (name,) = backend.client.scan_iter(match=backend.prefix + "*")
            stored = backend.client.hget(name, "path").decode()
        assert stored == "/payments/\\x00/"
