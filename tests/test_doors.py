"""Every door into the package, attached every way a project may attach it,
with the Django and DRF features a view may use (issue "Hardening")."""

from __future__ import annotations

import gzip
import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Group, User
from django.http import HttpResponse
from django.test import AsyncClient, Client, RequestFactory
from rest_framework import viewsets
from rest_framework.authtoken.models import Token
from rest_framework.views import APIView

from idempotency import idempotent
from idempotency.drf import IdempotencyMixin
from idempotency.keys import digest
from idempotency.models import IdempotencyRecord
from idempotency.stores.dialects import DatabaseNow
from tests.conftest import atomic_requests_set
from tests.test_checks import idempotency_messages, only
from tests.test_http import assert_problem, send
from tests.testapp.models import Charge

pytestmark = pytest.mark.django_db


def token_headers(username: str) -> dict[str, str]:
    token = Token.objects.create(user=User.objects.create_user(username))
    return {"Authorization": f"Token {token.key}"}


def scopes() -> set[str]:
    return set(IdempotencyRecord.objects.values_list("scope", flat=True))


# 1. Attached to a DRF view's dispatch: scoped after DRF authentication


@pytest.mark.parametrize(
    "path", ["/dispatch-decorated/", "/dispatch-in-body/", "/dispatch-viewset/"]
)
def test_decorator_on_dispatch_scopes_token_users_after_authentication(
    client: Any, path: str
) -> None:
    alice, bob = token_headers("alice"), token_headers("bob")

    first = send(client, path, key="shared", headers=alice)
    bob_first = send(client, path, key="shared", headers=bob)
    anonymous = send(client, path, key="shared")
    alice_again = send(client, path, key="shared", headers=alice)

    assert first.status_code == bob_first.status_code == anonymous.status_code == 201
    assert "Idempotent-Replayed" not in bob_first
    assert "Idempotent-Replayed" not in anonymous
    assert alice_again["Idempotent-Replayed"] == "true"
    assert alice_again.content == first.content
    users = {u.username: u.pk for u in User.objects.all()}
    assert scopes() == {f"user:{users['alice']}", f"user:{users['bob']}", "anonymous"}
    assert Charge.objects.count() == 3


def test_mixin_and_decorator_on_dispatch_together_protect_the_view_once(client: Any) -> None:
    first = send(client, "/mixin-and-dispatch/", key="both")
    again = send(client, "/mixin-and-dispatch/", key="both")

    assert first.status_code == 201, first.content
    assert again["Idempotent-Replayed"] == "true"
    assert Charge.objects.count() == 1
    assert IdempotencyRecord.objects.count() == 1


# 2. A mixin that would silently do nothing fails at class creation


def test_mixin_after_the_drf_base_class_raises_at_class_creation() -> None:
    with pytest.raises(TypeError, match=r"put the mixin first.*\(IdempotencyMixin, APIView"):

        class Reversed(APIView, IdempotencyMixin):  # type: ignore[misc]
            pass


def test_mixin_after_a_viewset_raises_at_class_creation() -> None:
    with pytest.raises(TypeError, match="put the mixin first"):

        class Reversed(viewsets.ViewSet, IdempotencyMixin):  # type: ignore[misc]
            pass


@pytest.mark.parametrize(
    ("attributes", "error", "message"),
    [
        (
            {"idempotency_methods": "POST"},
            TypeError,
            "a bare string is read as the set of its letters",
        ),
        ({"idempotency_methods": ("GET", "POST")}, ValueError, "remove safe methods"),
        ({"idempotency_methods": ("FETCH",)}, ValueError, "POST, PUT, PATCH and DELETE"),
        ({"idempotency_methods": ()}, ValueError, "one or more"),
        ({"idempotency_ttl": 0}, ValueError, "above zero"),
        ({"idempotency_ttl": -5}, ValueError, "above zero"),
        ({"idempotency_ttl": "3600"}, TypeError, "number of seconds"),
        ({"idempotency_ttl": 10**12}, ValueError, "year 9999"),
        ({"idempotency_required": "yes"}, TypeError, "True or False"),
        ({"idempotency_scope": 42}, TypeError, "function"),
        ({"idempotency_wait": -1}, ValueError, "0 or more"),
        ({"idempotency_wait": 3600}, ValueError, "at most"),
    ],
)
def test_mixin_with_a_bad_option_raises_at_class_creation_with_the_fix(
    attributes: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        type("Misconfigured", (IdempotencyMixin, viewsets.ViewSet), attributes)


def test_mixin_subclass_overriding_dispatch_is_accepted() -> None:
    class Base(IdempotencyMixin, viewsets.ViewSet):
        pass

    class Child(Base):
        def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            return super().dispatch(request, *args, **kwargs)

    assert issubclass(Child, IdempotencyMixin)


def test_mixin_on_an_async_handler_raises_at_class_creation() -> None:
    with pytest.raises(TypeError, match="async"):

        class Async(IdempotencyMixin, APIView):
            async def post(self, request: Any) -> Any: ...


# 6. Per-view options checked at decoration, with the rules of the checks


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"ttl": 0}, ValueError, "above zero"),
        ({"ttl": -1}, ValueError, "above zero"),
        ({"ttl": float("inf")}, ValueError, "year 9999"),
        ({"ttl": 10**12}, ValueError, "year 9999"),
        ({"ttl": "60"}, TypeError, "number of seconds"),
        ({"ttl": True}, TypeError, "number of seconds"),
        ({"scope": 42}, TypeError, "function"),
        ({"scope": lambda: "x"}, ValueError, "request"),
        ({"required": "no"}, TypeError, "True or False"),
        ({"wait": -0.5}, ValueError, "0 or more"),
        ({"atomic": None}, TypeError, "True or False"),
        ({"token": 1}, TypeError, "True or False"),
    ],
)
def test_decorator_with_a_bad_option_raises_at_decoration(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        idempotent(**options)


# A ttl as long as the validation accepts is stored as its expiry, on every
# database (MariaDB refused the claim with a datetime overflow, SQLite stored
# NULL, PostgreSQL a year 10000 no datetime reads back); a longer one is refused.


def longest_ttl() -> timedelta:
    """The longest ttl the validation accepts now: it ends just before 9999."""
    return datetime(9999, 1, 1, tzinfo=timezone.utc) - datetime.now(timezone.utc)


def database_now() -> datetime:
    return IdempotencyRecord.objects.annotate(now=DatabaseNow()).values_list("now", flat=True)[0]


@pytest.mark.parametrize("where", ["view", "setting"])
def test_the_longest_ttl_accepted_is_stored_as_its_expiry_and_replays(
    client: Any, settings: Any, where: str
) -> None:
    # A minute's margin: the checks and the request come a moment later.
    ttl = longest_ttl() - timedelta(minutes=1)
    if where == "view":
        view = idempotent(ttl=ttl)(lambda request: HttpResponse("ran", status=201))
        call = lambda: view(RequestFactory().post(  # noqa: E731
            "/x/", b"{}", content_type="application/json", HTTP_IDEMPOTENCY_KEY="huge"
        ))  # fmt: skip
    else:
        settings.IDEMPOTENCY = {"TTL": ttl}
        assert not [m for m in idempotency_messages() if m.id == "idempotency.E007"]
        call = lambda: send(client, key="huge")  # noqa: E731

    first = call()
    now = database_now()
    again = call()

    assert first.status_code == 201
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    [expires_at] = IdempotencyRecord.objects.values_list("expires_at", flat=True)
    # Read back as written (MariaDB's zero date 0000-00-00 reads as None).
    assert expires_at is not None and expires_at.year == 9998
    # SQLite's clock reads in milliseconds, rounded where the claim's was not.
    assert now + ttl - timedelta(seconds=5) <= expires_at <= now + ttl + timedelta(milliseconds=1)


def test_a_ttl_ending_in_9999_is_refused_by_the_decorator_and_the_checks(settings: Any) -> None:
    beyond = longest_ttl() + timedelta(days=1)
    with pytest.raises(ValueError, match="ends before the year 9999"):
        idempotent(ttl=beyond)
    with pytest.raises(ValueError, match="ends before the year 9999"):
        type("Long", (IdempotencyMixin, viewsets.ViewSet), {"idempotency_ttl": beyond})
    settings.IDEMPOTENCY = {"TTL": beyond}
    assert "before the year 9999" in only(idempotency_messages(), "idempotency.E007").msg


# 5. Views that handle their transaction themselves


@pytest.mark.parametrize("path", ["/durable/", "/durable-mixin/"])
def test_a_durable_atomic_block_inside_the_view_is_misconfigured_and_names_atomic_false(
    client: Any, caplog: Any, path: str
) -> None:
    with caplog.at_level(logging.ERROR, logger="idempotency"):
        first = send(client, path, key="durable")
    [record] = [r for r in caplog.records if r.name == "idempotency"]
    again = send(client, path, key="durable")

    problem = assert_problem(first, 500, "misconfigured")
    assert "durable atomic block" in problem["detail"]
    assert "@idempotent(atomic=False)" in problem["detail"]
    assert "idempotency_atomic = False" in problem["detail"]
    assert_problem(again, 500, "misconfigured")  # released, not stuck in progress
    assert not IdempotencyRecord.objects.exists()
    assert not Charge.objects.exists()
    assert record.levelno == logging.ERROR
    assert "durable atomic block" in record.getMessage()
    assert "atomic=False" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    assert "durable atomic block cannot be nested" in str(record.exc_info[1])


def test_a_durable_block_refused_under_atomic_requests_is_djangos_error() -> None:
    # The request's own transaction encloses the view too: atomic=False would
    # not help, so the package does not say it would.
    client = Client(raise_request_exception=True)
    with atomic_requests_set(True), pytest.raises(RuntimeError, match="durable atomic block"):
        send(client, "/durable/", key="durable-atomic-requests")
    assert not IdempotencyRecord.objects.exists()


def test_a_runtime_error_of_the_views_own_propagates_unchanged(client: Any) -> None:
    with pytest.raises(RuntimeError, match="durable atomic block") as raised:
        send(client, "/durable-lookalike/", key="lookalike")
    assert raised.value.__cause__ is None
    assert not IdempotencyRecord.objects.exists()
    assert not Charge.objects.exists()


def test_a_view_that_owns_its_transaction_runs_once_and_replays(client: Any) -> None:
    first = send(client, "/owns-transaction/", key="owner")
    second = send(client, "/owns-transaction/", key="owner")

    assert first.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    assert Charge.objects.count() == 1


def test_a_view_that_sets_rollback_is_answered_as_it_returned_and_released(
    client: Any, atomic_requests: bool
) -> None:
    first = send(client, "/rolls-back/", key="rollback")
    second = send(client, "/rolls-back/", key="rollback")

    assert first.status_code == second.status_code == 400
    assert first.json() == {"error": "refused after writing"}
    assert "Idempotent-Replayed" not in second
    assert Charge.objects.count() == 0
    assert not IdempotencyRecord.objects.exists()


# 9. A replay is byte- and meaning-faithful


def test_a_gzipped_response_replays_with_its_content_encoding(client: Any) -> None:
    headers = {"Accept-Encoding": "gzip"}
    first = send(client, "/gzipped/", key="gz", headers=headers)
    second = send(client, "/gzipped/", key="gz", headers=headers)

    assert first["Content-Encoding"] == second["Content-Encoding"] == "gzip"
    assert second["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    assert json.loads(gzip.decompress(second.content))["padding"] == "x" * 2000


# 10. DRF's own pipeline


def test_a_drf_replay_has_data_like_the_first_response(client: Any) -> None:
    first = send(client, "/viewset/", key="data")
    second = send(client, "/viewset/", key="data")

    assert second["Idempotent-Replayed"] == "true"
    assert second.data == first.data == json.loads(first.content)


def test_a_drf_problem_is_problem_json_by_default_and_has_data(client: Any) -> None:
    send(client, "/viewset/", key="reused")
    response = send(client, "/viewset/", {"amount": 9}, key="reused")

    problem = assert_problem(response, 422, "key-reused")
    assert response.data == problem


def test_a_projects_own_exception_handler_formats_the_packages_errors(client: Any) -> None:
    send(client, "/own-errors/", key="reused")
    response = send(client, "/own-errors/", {"amount": 9}, key="reused")

    assert response.status_code == 422
    assert response.json() == {
        "type": "client_error",
        "errors": [{"code": "key-reused", "detail": response.json()["errors"][0]["detail"]}],
    }
    assert "different" in response.json()["errors"][0]["detail"]


def test_a_drf_validation_error_releases_the_key(client: Any) -> None:
    refused = send(client, "/validating/", {"amount": 0}, key="fix-me")
    corrected = send(client, "/validating/", {"amount": 0}, key="fix-me")

    assert refused.status_code == corrected.status_code == 400
    assert "Idempotent-Replayed" not in corrected
    assert not IdempotencyRecord.objects.exists()
    assert Charge.objects.count() == 0  # the write before validation rolled back too


def test_a_replay_the_retrys_accept_excludes_is_406(client: Any) -> None:
    first = send(client, "/negotiated/", key="csv", headers={"Accept": "text/csv"})
    as_json = send(client, "/negotiated/", key="csv", headers={"Accept": "application/json"})
    as_csv = send(client, "/negotiated/", key="csv", headers={"Accept": "text/csv"})
    as_anything = send(client, "/negotiated/", key="csv")

    assert first["Content-Type"] == "text/csv"
    assert_problem(as_json, 406, "response-not-acceptable")
    assert as_csv["Idempotent-Replayed"] == as_anything["Idempotent-Replayed"] == "true"
    assert as_csv.content == first.content
    assert Charge.objects.count() == 1


# Principals (issue "Security", defect 1)


def test_callers_known_only_by_a_credential_get_a_scope_each(client: Any) -> None:
    tenant_a = send(client, "/principal/", key="pay", headers={"X-Api-Key": "key-of-a"})
    tenant_b = send(client, "/principal/", key="pay", headers={"X-Api-Key": "key-of-b"})
    tenant_b_other_body = send(client, "/principal/", {"amount": 8}, key="pay",
                               headers={"X-Api-Key": "key-of-b"})  # fmt: skip
    tenant_a_again = send(client, "/principal/", key="pay", headers={"X-Api-Key": "key-of-a"})

    assert tenant_a.status_code == tenant_b.status_code == 201
    assert "Idempotent-Replayed" not in tenant_b
    assert_problem(tenant_b_other_body, 422, "key-reused")  # B's own key, not A's
    assert tenant_a_again["Idempotent-Replayed"] == "true"
    assert len(scopes()) == 2
    assert all(s.startswith("credential:") for s in scopes())
    assert not any("key-of" in s for s in scopes())  # never the credential itself


def test_a_principal_that_is_not_the_user_model_never_shares_a_users_scope(client: Any) -> None:
    user = User.objects.create_user("user-one")
    device = Group.objects.create(pk=user.pk, name="device")
    client.force_login(user)

    as_user = send(client, "/principal/", key="same")
    as_device = send(Client(), "/principal/", key="same", headers={"X-Device": str(device.pk)})
    device_as_user = send(Client(), "/principal/", key="same",
                          headers={"X-Device": str(device.pk), "X-Device-As": "user"})  # fmt: skip

    assert {as_user.status_code, as_device.status_code, device_as_user.status_code} == {201}
    assert "Idempotent-Replayed" not in as_device
    # As request.auth the device is a credential, whose pk may be its secret:
    # named by a digest, so it is another scope than the same model as a user.
    assert "Idempotent-Replayed" not in device_as_user
    credential_scopes = {s for s in scopes() if s.startswith("auth.group:")} - {
        f"auth.group:{device.pk}"
    }
    assert scopes() == {f"user:{user.pk}", f"auth.group:{device.pk}", *credential_scopes}
    assert len(credential_scopes) == 1


def test_a_credential_the_default_scope_cannot_name_is_refused_not_merged(client: Any) -> None:
    response = send(client, "/principal/", key="opaque", headers={"X-Opaque": "1"})

    assert_problem(response, 500, "misconfigured")
    assert Charge.objects.count() == 0
    assert not IdempotencyRecord.objects.exists()


# Anonymous callers (issue "Security", defect 3)


def test_anonymous_share_is_one_scope(client: Any) -> None:
    send(Client(), key="shared-anon")
    other_visitor = send(Client(), key="shared-anon")

    assert other_visitor["Idempotent-Replayed"] == "true"
    assert scopes() == {"anonymous"}


def test_anonymous_session_scopes_each_visitor_by_their_session(settings: Any) -> None:
    settings.IDEMPOTENCY = {"ANONYMOUS": "session"}
    visitor, other = Client(), Client()
    for c in (visitor, other):
        session = c.session
        session["seen"] = True
        session.save()

    first = send(visitor, key="visit")
    other_first = send(other, key="visit")
    again = send(visitor, key="visit")
    no_session = send(Client(), key="visit")

    assert "Idempotent-Replayed" not in other_first
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert_problem(no_session, 400, "anonymous-refused")
    assert len(scopes()) == 2 and all(s.startswith("session:") for s in scopes())
    assert not any(visitor.session.session_key in s for s in scopes())


def test_anonymous_refuse_answers_400_and_runs_nothing(client: Any, settings: Any) -> None:
    settings.IDEMPOTENCY = {"ANONYMOUS": "refuse"}

    assert_problem(send(client, key="k"), 400, "anonymous-refused")
    assert send(client, key=None).status_code == 201  # no key: as if the package were absent
    client.force_login(User.objects.create_user("signed-in"))
    assert send(client, key="k").status_code == 201
    assert Charge.objects.count() == 2


# Sensitive responses (issue "Security", defect 4)


def test_a_sensitive_response_is_stored_sealed_and_replays_to_its_key(client: Any) -> None:
    first = send(client, "/sensitive/", key="new-api-key")
    replay = send(client, "/sensitive/", key="new-api-key")

    record = IdempotencyRecord.objects.get()
    assert record.sensitive is True
    assert record.response_headers == {}
    stored = bytes(record.response_body)
    assert b"sk_live_" not in stored and b"token=secret" not in stored
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.content == first.content
    assert replay["Location"] == first["Location"]
    assert record.key == digest("new-api-key")


def test_a_sealed_response_does_not_open_in_another_scope() -> None:
    from idempotency import crypto
    from idempotency.stores import StoredResponse

    sealed = crypto.seal(StoredResponse(201, {"A": "b"}, b"secret"), "key", "user:1")

    assert crypto.open_sealed(sealed, "key", "user:1") == StoredResponse(201, {"A": "b"}, b"secret")
    with pytest.raises(crypto.SealError):
        crypto.open_sealed(sealed, "key", "user:2")
    with pytest.raises(crypto.SealError):
        crypto.open_sealed(sealed, "another-key", "user:1")


def test_a_sealed_response_opens_after_a_secret_key_rotation(client: Any, settings: Any) -> None:
    first = send(client, "/sensitive/", key="rotated")
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "rotated-secret"

    assert send(client, "/sensitive/", key="rotated").content == first.content


# 8. Async views


def test_an_async_view_runs_once_and_replays() -> None:
    client = AsyncClient()
    post = async_to_sync(client.post)
    headers = {"Idempotency-Key": "async-key"}

    first = post("/async/", {"amount": 3}, content_type="application/json", headers=headers)
    second = post("/async/", {"amount": 3}, content_type="application/json", headers=headers)
    other = post("/async/", {"amount": 4}, content_type="application/json", headers=headers)

    assert first.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    assert_problem(other, 422, "key-reused")
    assert Charge.objects.count() == 1


def test_method_decorator_on_an_async_class_view_runs_once_and_replays() -> None:
    post = async_to_sync(AsyncClient().post)
    headers = {"Idempotency-Key": "async-class"}

    first = post("/async-class/", {}, content_type="application/json", headers=headers)
    second = post("/async-class/", {}, content_type="application/json", headers=headers)

    assert first.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert Charge.objects.count() == 1


# Found by the review of the docs against the code


def test_non_model_principals_whose_pks_differ_only_by_case_are_two_scopes() -> None:
    from idempotency.scope import principal

    class TokenUser:
        is_authenticated = True

        def __init__(self, pk: str) -> None:
            self.pk = pk

    class Request:
        def __init__(self, pk: str) -> None:
            self.user = TokenUser(pk)

    assert principal(Request("AbC")) != principal(Request("abc"))  # type: ignore[arg-type]
    assert principal(Request("AbC")).endswith(":AbC")  # type: ignore[arg-type]


def test_method_decorator_on_an_async_class_views_dispatch_runs_once_and_replays() -> None:
    post = async_to_sync(AsyncClient().post)
    headers = {"Idempotency-Key": "async-dispatch"}

    first = post("/async-dispatch/", {}, content_type="application/json", headers=headers)
    second = post("/async-dispatch/", {}, content_type="application/json", headers=headers)

    assert first.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert Charge.objects.count() == 1


def test_a_sensitive_response_that_cannot_be_kept_keeps_no_header_in_clear(client: Any) -> None:
    response = send(client, "/sensitive-stream/", key="secret-stream")

    assert response["Location"].endswith("token=secret-in-a-header")
    record = IdempotencyRecord.objects.get()
    assert record.response_headers == {} and record.response_body is None


def test_a_per_view_scope_that_does_not_import_is_500_misconfigured(rf: Any) -> None:
    from django.http import HttpResponse

    @idempotent(scope="tests.no_such_module.scope")
    def view(request: Any) -> Any:
        return HttpResponse("ran")

    request = rf.post("/x/", b"{}", content_type="application/json", HTTP_IDEMPOTENCY_KEY="k")
    response = view(request)

    assert response.status_code == 500 and b"misconfigured" in response.content
    assert not IdempotencyRecord.objects.exists()


def test_a_body_too_large_for_a_mixin_view_reaches_the_projects_exception_handler(
    client: Any, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100

    response = send(client, "/own-errors/", {"padding": "x" * 500}, key="big")

    assert response.status_code == 413
    assert response.json()["errors"][0]["code"] == "request-too-large"
    assert Charge.objects.count() == 0


def test_a_missing_records_table_is_500_misconfigured_not_an_outage(
    transactional_db: Any, atomic_requests: bool
) -> None:
    from django.db import connection

    table = connection.ops.quote_name(IdempotencyRecord._meta.db_table)
    renamed = connection.ops.quote_name("idempotency_renamed_away")
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {renamed}")
    try:
        response = send(Client(), key="no-table")
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {renamed} RENAME TO {table}")

    assert_problem(response, 500, "misconfigured")
    assert Charge.objects.count() == 0
