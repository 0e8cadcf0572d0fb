"""The entry points (contract section 1): decorator, DRF mixin, and their misuse."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.http import HttpResponse
from django.views import View
from rest_framework.authtoken.models import Token
from rest_framework.decorators import api_view
from rest_framework.views import APIView

import idempotency
from idempotency import idempotent
from idempotency.models import IdempotencyRecord
from tests.test_http import assert_problem, send
from tests.testapp.models import Charge

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def alice(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("alice")


@pytest.fixture
def admin(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("admin", is_staff=True)


def token_header(user: Any) -> dict[str, str]:
    token, _ = Token.objects.get_or_create(user=user)
    return {"Authorization": f"Token {token.key}"}


# Every entry point replays


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("post", "/plain/", id="function"),
        pytest.param("post", "/api-function/", id="api_view"),
        pytest.param("post", "/api-view/", id="APIView-method"),
        pytest.param("post", "/viewset/", id="mixin-create"),
        pytest.param("put", "/viewset/1/", id="mixin-update"),
        pytest.param("patch", "/viewset/1/", id="mixin-partial_update"),
        pytest.param("delete", "/viewset/1/", id="mixin-destroy"),
        pytest.param("post", "/viewset/1/refund/", id="mixin-action"),
        pytest.param("post", "/action/refund/", id="decorated-action"),
        pytest.param("post", "/class-view/", id="method_decorator"),
    ],
)
def test_entry_point_replays(client: Any, method: str, path: str) -> None:
    first = send(client, path, method=method)

    replay = send(client, path, method=method)

    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first
    assert replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.content == first.content
    assert Charge.objects.count() == 1
    record = IdempotencyRecord.objects.get()
    assert (record.method, record.path) == (method.upper(), path)


def test_mixin_and_decorator_on_one_action_wrap_it_once(client: Any) -> None:
    first = send(client, "/mixin-action/refund/")

    replay = send(client, "/mixin-action/refund/")

    assert first.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert Charge.objects.count() == 1


@pytest.mark.parametrize("path", ["/viewset/", "/api-function/"])
def test_drf_safe_methods_pass_through(client: Any, path: str) -> None:
    response = client.get(path, headers={"Idempotency-Key": "key-1"})

    assert response.status_code == 200
    assert not IdempotencyRecord.objects.exists()


# DRF: nothing is answered before DRF has authenticated, authorised and throttled


@pytest.mark.parametrize("path", ["/api-authenticated/", "/authenticated-viewset/"])
def test_unauthenticated_request_is_refused_not_replayed(
    client: Any, alice: Any, path: str
) -> None:
    assert send(client, path, headers=token_header(alice)).status_code == 201

    response = send(client, path)

    assert response.status_code == 401
    assert "Idempotent-Replayed" not in response
    assert IdempotencyRecord.objects.count() == 1
    assert Charge.objects.count() == 1


@pytest.mark.parametrize("path", ["/api-authenticated/", "/authenticated-viewset/"])
def test_unauthenticated_request_in_a_custom_scope_is_refused_not_replayed(
    client: Any, settings: Any, alice: Any, path: str
) -> None:
    # The scope ignores the user, so only authentication stands between an
    # anonymous caller and alice's response.
    settings.IDEMPOTENCY = {"SCOPE": "tests.testapp.views.tenant_scope"}
    tenant = {"X-Tenant": "a"}
    assert send(client, path, headers={**tenant, **token_header(alice)}).status_code == 201

    response = send(client, path, headers=tenant)

    assert response.status_code == 401
    assert "Idempotent-Replayed" not in response
    bad_token = send(client, path, headers={**tenant, "Authorization": "Token nope"})
    assert bad_token.status_code == 401
    assert "Idempotent-Replayed" not in bad_token


@pytest.mark.parametrize("path", ["/admin-only/", "/admin-viewset/"])
def test_forbidden_request_creates_no_record(
    client: Any, alice: Any, admin: Any, path: str
) -> None:
    response = send(client, path, headers=token_header(alice))

    assert response.status_code == 403
    assert not IdempotencyRecord.objects.exists()
    assert Charge.objects.count() == 0
    allowed = send(client, path, headers=token_header(admin))
    assert allowed.status_code == 201
    assert IdempotencyRecord.objects.get().scope == f"user:{admin.pk}"


@pytest.mark.parametrize("path", ["/throttled/", "/throttled-viewset/"])
def test_throttled_request_creates_no_record(client: Any, path: str) -> None:
    response = send(client, path)

    assert response.status_code == 429
    assert response["Retry-After"] == "7"
    assert not IdempotencyRecord.objects.exists()
    assert Charge.objects.count() == 0


def test_token_authenticated_user_is_scoped_on_every_drf_entry_point(
    client: Any, alice: Any
) -> None:
    paths = ["/api-function/", "/api-view/", "/viewset/", "/action/refund/"]
    for index, path in enumerate(paths):
        send(client, path, key=f"key-{index}", headers=token_header(alice))

    assert set(IdempotencyRecord.objects.values_list("scope", flat=True)) == {f"user:{alice.pk}"}


# Mixin attributes override the settings


def test_mixin_scope_attribute_decides_the_scope(client: Any) -> None:
    send(client, "/configured-viewset/", headers={"X-Tenant": "a"})
    send(client, "/configured-viewset/", headers={"X-Tenant": "b"})

    assert set(IdempotencyRecord.objects.values_list("scope", flat=True)) == {
        "tenant:a",
        "tenant:b",
    }
    assert Charge.objects.count() == 2


def test_mixin_ttl_attribute_sets_the_expiry(client: Any) -> None:
    send(client, "/configured-viewset/", headers={"X-Tenant": "a"})

    record = IdempotencyRecord.objects.get()
    assert record.expires_at - record.created_at == timedelta(minutes=2)


def test_mixin_required_attribute_overrides_the_setting(client: Any, settings: Any) -> None:
    settings.IDEMPOTENCY = {"REQUIRED": True}

    assert send(client, "/optional-viewset/", key=None).status_code == 201
    settings.IDEMPOTENCY = {"REQUIRED": False}
    response = send(client, "/configured-viewset/", key=None, headers={"X-Tenant": "a"})
    assert_problem(response, 400, "key-missing")


def test_decorator_required_option_overrides_the_setting(client: Any, settings: Any) -> None:
    settings.IDEMPOTENCY = {"REQUIRED": True}

    assert send(client, "/optional/", key=None).status_code == 201
    assert_problem(send(client, "/plain/", key=None), 400, "key-missing")


def test_method_outside_idempotency_methods_passes_through(client: Any) -> None:
    for _ in range(2):
        response = send(client, "/configured-viewset/1/", method="put", key="key-1")
        assert response.status_code == 201
        assert "Idempotent-Replayed" not in response

    assert Charge.objects.count() == 2
    assert not IdempotencyRecord.objects.exists()
    send(client, "/configured-viewset/1/", method="patch", headers={"X-Tenant": "a"})
    replay = send(client, "/configured-viewset/1/", method="patch", headers={"X-Tenant": "a"})
    assert replay["Idempotent-Replayed"] == "true"


# Misuse fails at decoration time


def test_idempotent_above_api_view_raises_type_error_with_the_fix() -> None:
    def pay(request: Any) -> Any: ...

    with pytest.raises(TypeError, match="below @api_view") as error:
        idempotent(api_view(["POST"])(pay))

    assert "@api_view(['POST'])\n    @idempotent" in str(error.value)


def test_idempotent_on_an_api_view_class_view_raises_type_error() -> None:
    with pytest.raises(TypeError, match="below @api_view"):
        idempotent(APIView.as_view())


def test_idempotent_with_a_positional_option_raises_type_error() -> None:
    with pytest.raises(TypeError, match=r"@idempotent\(ttl=3600\)"):
        idempotent(3600)  # type: ignore[call-overload]


def test_idempotent_on_a_class_raises_type_error() -> None:
    class Pay(View):
        pass

    with pytest.raises(TypeError, match="method_decorator"):
        idempotent(Pay)


def test_idempotent_keeps_the_view_name_and_docstring() -> None:
    def pay(request: Any) -> HttpResponse:
        """Pay."""
        return HttpResponse()

    wrapped = idempotent(pay)

    assert wrapped.__name__ == "pay"
    assert wrapped.__doc__ == "Pay."
    assert wrapped.__wrapped__ is pay


def test_idempotent_finds_no_request_raises_type_error() -> None:
    @idempotent
    def not_a_view(value: int) -> Any: ...

    with pytest.raises(TypeError, match="could not find the request"):
        not_a_view(1)


# The package root


def test_import_idempotency_does_not_import_models() -> None:
    code = (
        "import sys, idempotency\n"
        "assert 'idempotency.models' not in sys.modules, 'models imported'\n"
        "idempotency.idempotent\n"
        "assert 'idempotency.models' not in sys.modules, 'models imported by idempotent'\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}

    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )

    assert result.returncode == 0, result.stderr


def test_idempotent_is_a_public_name_of_the_package() -> None:
    assert idempotency.idempotent is idempotent
    assert "idempotent" in idempotency.__all__
    with pytest.raises(AttributeError):
        idempotency.no_such_name  # noqa: B018
