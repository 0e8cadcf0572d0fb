"""Defects found by the adversarial review of main (issues 8, 9 and 13).

Each test asserts the behaviour the contract promises and fails on main at
the commit this file was written against; the report of branch ``review``
gives each reproduction.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.http import HttpResponse, JsonResponse
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django.urls import path
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from rest_framework.authentication import BaseAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.response import Response
from rest_framework.views import APIView

from idempotency import idempotent, issue_token
from idempotency.drf import IdempotencyMixin
from idempotency.models import IdempotencyRecord
from tests.testapp.models import Charge

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

KEY = {"Idempotency-Key": "review-key"}


class _Charging(APIView):
    def post(self, request: Any) -> Response:
        Charge.objects.create(amount=1)
        return Response({"charges": Charge.objects.count()}, status=201)


class TtlZeroPerRequest(IdempotencyMixin, _Charging):
    def get_idempotency_ttl(self) -> Any:
        return 0


class TtlNegativePerRequest(IdempotencyMixin, _Charging):
    def get_idempotency_ttl(self) -> Any:
        return -60


class RequiredPerRequest(IdempotencyMixin, _Charging):
    answers: list[Any] = []

    def get_idempotency_required(self) -> Any:
        return self.answers.pop(0)


class GetNamedPerRequest(IdempotencyMixin, APIView):
    def get_idempotency_methods(self) -> Any:
        return frozenset({"GET", "POST"})

    def get(self, request: Any) -> Response:
        return Response({"charges": Charge.objects.count()})


@method_decorator(idempotent, name="dispatch")
class DecoratedAndMixin(IdempotencyMixin, _Charging):
    pass


@csrf_exempt
@idempotent(token=True)
def token_form(request: Any) -> HttpResponse:
    Charge.objects.create(amount=1)
    return JsonResponse({"charges": Charge.objects.count()}, status=201)


class FormUpdate(IdempotencyMixin, APIView):
    def put(self, request: Any) -> Response:
        Charge.objects.create(amount=int(request.data["amount"]))
        return Response({"charges": Charge.objects.count()})

    patch = put


class DeviceTokenAuthentication(BaseAuthentication):
    """A device or service credential with no user, as issue 9 lists: the
    credential is a model whose primary key is the secret itself (DRF's own
    authtoken ``Token`` is such a model)."""

    def authenticate(self, request: Any) -> tuple[None, Token] | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Device "):
            return None
        return None, Token.objects.get(key=header.removeprefix("Device "))


class DeviceCharge(IdempotencyMixin, _Charging):
    authentication_classes = [DeviceTokenAuthentication]


def long_token(request: Any) -> HttpResponse:
    # A token that outlives the record its first use writes (TTL is a day).
    return HttpResponse(issue_token(request, ttl=7 * 24 * 3600))


def short_token(request: Any) -> HttpResponse:
    # A form page that hands out a token for ten minutes, as a checkout would.
    return HttpResponse(issue_token(request, ttl=600))


@csrf_exempt
@idempotent(scope="no.such.path")
def unimportable_scope_view(request: Any) -> HttpResponse:
    return HttpResponse(status=201)


class UnimportableScopeView(IdempotencyMixin, _Charging):
    idempotency_scope = "tests.test_review_findings.no_such_function"


@csrf_exempt
@idempotent
def plain_form_update(request: Any) -> HttpResponse:
    Charge.objects.create(amount=1)
    return JsonResponse({"charges": Charge.objects.count(), "body": len(request.body)})


urlpatterns = [
    path("plain-form-update/", plain_form_update),
    path("unimportable-scope/", unimportable_scope_view),
    path("unimportable-scope-class/", UnimportableScopeView.as_view()),
    path("ttl-zero/", TtlZeroPerRequest.as_view()),
    path("ttl-negative/", TtlNegativePerRequest.as_view()),
    path("get-named/", GetNamedPerRequest.as_view()),
    path("required-per-request/", RequiredPerRequest.as_view()),
    path("decorated-and-mixin/", DecoratedAndMixin.as_view()),
    path("token-form/", token_form),
    path("short-token/", short_token),
    path("long-token/", long_token),
    path("form-update/", FormUpdate.as_view()),
    path("device-charge/", DeviceCharge.as_view()),
]


def post(client: Any, url: str) -> Any:
    return client.post(url, "{}", content_type="application/json", headers=KEY)


@pytest.mark.parametrize("url", ["/ttl-zero/", "/ttl-negative/"])
def test_mixin_get_idempotency_ttl_out_of_range_never_runs_the_view_twice(
    client: Any, url: str
) -> None:
    """Contract 3: an option of the wrong range never silently degrades. The
    documented per-request override ``get_idempotency_ttl`` is not validated:
    returning 0 (or a negative number) stores a record that is already
    expired, so the retry with the same key charges again."""
    try:
        post(client, url)
        post(client, url)
    except (TypeError, ValueError):
        pass  # refusing loudly is an acceptable fix
    assert Charge.objects.count() <= 1


def test_mixin_hook_answer_equal_to_a_valid_one_is_still_checked(client: Any) -> None:
    """Contract 3: a per-request answer of the wrong type is refused. The
    answers that passed are remembered so that they are not checked again,
    and 1 equals True: ``required=1`` must not pass as the ``True`` before it."""
    RequiredPerRequest.answers[:] = [True, 1]
    assert post(client, "/required-per-request/").status_code == 201
    refused = client.post("/required-per-request/", "{}", content_type="application/json",
                          headers={"Idempotency-Key": "another-key"})  # fmt: skip
    assert refused.status_code == 500
    assert Charge.objects.count() == 1


def test_mixin_get_idempotency_methods_naming_get_does_not_replay_gets(client: Any) -> None:
    """Contract 3: GET passes through untouched and creates no record; naming a
    safe method is refused. Returned from ``get_idempotency_methods`` it is
    accepted: the GET is stored and later GETs with the key replay stale data."""
    try:
        client.get("/get-named/", headers=KEY)
        Charge.objects.create(amount=1)
        second = client.get("/get-named/", headers=KEY)
    except (TypeError, ValueError):
        return  # refusing loudly is an acceptable fix
    assert "Idempotent-Replayed" not in second
    assert second.json() == {"charges": 1}
    assert not IdempotencyRecord.objects.exists()


def test_decorator_on_dispatch_of_a_mixin_view_is_refused_or_works(client: Any) -> None:
    """Contract 3: an attachment that cannot honour the rules raises with the
    fix. ``@method_decorator(idempotent, name="dispatch")`` on a view that also
    has ``IdempotencyMixin`` wraps the handler twice: the inner door finds the
    outer door's claim and every keyed request is 409, the view never runs."""
    try:
        first = post(client, "/decorated-and-mixin/")
        retry = post(client, "/decorated-and-mixin/")
    except TypeError as error:
        assert "IdempotencyMixin" in str(error)
        return
    assert first.status_code == 201, first.content
    assert retry.status_code == 201 and retry["Idempotent-Replayed"] == "true"
    assert Charge.objects.count() == 1


def test_purge_batch_size_beyond_the_database_integer_range_is_a_command_error() -> None:
    """Contract 1: misuse of the purge command is a CommandError with the fix;
    a 20-digit --batch-size passes the parser and fails inside the database
    (sqlite: IntegrityError 'datatype mismatch') with a traceback."""
    with pytest.raises(CommandError, match="batch-size"):
        call_command("purge_idempotency_keys", "--batch-size", "99999999999999999999")


@pytest.mark.parametrize("method", ["put", "patch"])
@pytest.mark.parametrize("encoding", ["form", "multipart"])
def test_form_field_key_on_put_and_patch_is_honoured_not_ignored(
    client: Any, method: str, encoding: str
) -> None:
    """Contract 8: every idempotent view takes its key from the header or, when
    it is absent, from the idempotency_token field of a form-encoded or
    multipart body. tokens.form_token reads the field for POST only, so a DRF
    PUT or PATCH of a form carrying the field is unprotected: no record, and
    the retry charges again."""
    fields = {"idempotency_token": "form-key-1", "amount": "3"}
    body: str | bytes
    if encoding == "form":
        body, content_type = (
            "idempotency_token=form-key-1&amount=3",
            "application/x-www-form-urlencoded",
        )
    else:
        body, content_type = encode_multipart(BOUNDARY, fields), MULTIPART_CONTENT

    first = getattr(client, method)("/form-update/", body, content_type=content_type)
    retry = getattr(client, method)("/form-update/", body, content_type=content_type)

    assert first.status_code == 200, first.content
    assert retry["Idempotent-Replayed"] == "true"
    assert Charge.objects.count() == 1


def test_a_credential_whose_primary_key_is_the_secret_never_appears_in_scope_or_logs(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Contract 3 ("Scope") and issue 9: a caller known only by request.auth is
    scoped by that credential, and secrets never reach logs or the admin. The
    default scope names a model credential ``<label>:<pk>``; when the pk is
    the secret (DRF's Token, a service-token model keyed by its value) the
    scope is ``authtoken.token:<the credential>``, written to every log line
    and to the admin's scope column."""
    secret = Token.objects.create(user=User.objects.create_user("device-owner")).key
    headers = {**KEY, "Authorization": f"Device {secret}"}
    caplog.set_level(logging.INFO, logger="idempotency")

    first = client.post("/device-charge/", "{}", content_type="application/json", headers=headers)
    retry = client.post("/device-charge/", "{}", content_type="application/json", headers=headers)

    assert first.status_code == 201 and retry["Idempotent-Replayed"] == "true"
    scopes = list(IdempotencyRecord.objects.values_list("scope", flat=True))
    assert len(scopes) == 1
    assert secret not in scopes[0]
    assert not [r.getMessage() for r in caplog.records if secret in r.getMessage()]


@pytest.mark.urls("tests.test_review_findings")
def test_a_scope_dotted_path_that_does_not_import_is_a_system_check_error() -> None:
    """Contract 3: an option of the wrong value fails loudly, with the fix.
    The dotted path cannot be imported at decoration (the view's own module may
    be half imported then), so the check imports it once the URLconf is whole,
    as the first request would: before any request is answered 500."""
    from idempotency.checks.views import check_view_scope_paths

    found = check_view_scope_paths()

    assert [m.id for m in found] == ["idempotency.E030", "idempotency.E030"]
    assert "no.such.path" in found[0].msg + found[1].msg
    assert "no_such_function" in found[0].msg + found[1].msg
    assert all("does not import" in m.msg for m in found)


def test_a_form_token_that_outlives_its_record_is_not_accepted_a_second_time(
    client: Any,
) -> None:
    """Contract 8 and issue 13: a one-time token is accepted once. issue_token
    takes any ttl, so the record its first use writes lives at least as long
    as the token: while the token can be presented, the record replays it."""
    token = client.get("/long-token/").content.decode()
    first = client.post("/token-form/", {"idempotency_token": token, "amount": 1})
    assert first.status_code == 201

    record = IdempotencyRecord.objects.get()
    token_expires = timezone.now() + timedelta(days=7)
    assert record.expires_at >= token_expires - timedelta(minutes=1)
    retry = client.post("/token-form/", {"idempotency_token": token, "amount": 1})
    assert retry["Idempotent-Replayed"] == "true"
    assert Charge.objects.count() == 1


@pytest.mark.parametrize("method", ["put", "patch"])
@pytest.mark.parametrize("multipart", [False, True], ids=["form", "multipart"])
def test_form_field_key_on_a_plain_django_put_or_patch_is_honoured(
    client: Any, method: str, multipart: bool
) -> None:
    """Django parses form bodies for POST only: the package reads a PUT's or
    PATCH's form itself, and leaves the body readable for the view."""
    fields = {"idempotency_token": "plain-form-key", "amount": "3"}
    if multipart:
        body, content_type = encode_multipart(BOUNDARY, fields), MULTIPART_CONTENT
    else:
        body, content_type = (
            "idempotency_token=plain-form-key&amount=3",
            "application/x-www-form-urlencoded",
        )

    first = getattr(client, method)("/plain-form-update/", body, content_type=content_type)
    retry = getattr(client, method)("/plain-form-update/", body, content_type=content_type)

    assert first.status_code == 200 and first.json()["body"] == len(body)
    assert retry["Idempotent-Replayed"] == "true"
    assert Charge.objects.count() == 1
