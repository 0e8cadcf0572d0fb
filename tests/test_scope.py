"""Contract section 3, "Scope": no caller ever sees another caller's response."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.authtoken.models import Token

from idempotency.models import IdempotencyRecord
from idempotency.scope import default_scope
from tests.test_http import assert_problem, send
from tests.testapp.models import Charge
from tests.testapp.views import tenant_scope

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("alice")


@pytest.fixture
def bob(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("bob")


def token_header(user: Any) -> dict[str, str]:
    return {"Authorization": f"Token {Token.objects.create(user=user).key}"}


def scopes() -> set[str]:
    return set(IdempotencyRecord.objects.values_list("scope", flat=True))


def test_same_key_from_two_session_users_makes_independent_records(
    client: Any, alice: Any, bob: Any
) -> None:
    client.force_login(alice)
    alices = send(client)
    client.force_login(bob)

    bobs = send(client)

    assert bobs.status_code == 201
    assert "Idempotent-Replayed" not in bobs
    assert bobs.content != alices.content
    assert scopes() == {f"user:{alice.pk}", f"user:{bob.pk}"}
    client.force_login(alice)
    assert send(client).content == alices.content
    assert Charge.objects.count() == 2


def test_same_key_with_another_body_from_another_user_is_not_422(
    client: Any, alice: Any, bob: Any
) -> None:
    client.force_login(alice)
    send(client, body={"amount": 5})
    client.force_login(bob)

    assert send(client, body={"amount": 6}).status_code == 201


def test_anonymous_and_authenticated_callers_are_separate_scopes(client: Any, alice: Any) -> None:
    anonymous = send(client)
    client.force_login(alice)

    authenticated = send(client)

    assert "Idempotent-Replayed" not in authenticated
    assert authenticated.content != anonymous.content
    assert scopes() == {"anonymous", f"user:{alice.pk}"}


def test_anonymous_callers_share_one_scope(client: Any) -> None:
    first = send(client)

    assert send(client)["Idempotent-Replayed"] == "true"
    assert IdempotencyRecord.objects.get().scope == "anonymous"
    assert first.status_code == 201


@pytest.mark.parametrize("path", ["/api-authenticated/", "/authenticated-viewset/"])
def test_token_authenticated_users_are_scoped_by_user(
    client: Any, alice: Any, bob: Any, path: str
) -> None:
    alices = send(client, path, headers=token_header(alice))
    bobs = send(client, path, headers=token_header(bob))

    assert alices.status_code == bobs.status_code == 201
    assert "Idempotent-Replayed" not in bobs
    assert scopes() == {f"user:{alice.pk}", f"user:{bob.pk}"}
    assert Charge.objects.count() == 2


def test_token_and_session_of_one_user_share_a_scope(client: Any, alice: Any) -> None:
    first = send(client, "/api-authenticated/", headers=token_header(alice))
    client.force_login(alice)

    again = send(client, "/api-authenticated/")

    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content


@pytest.mark.parametrize(
    "hook", ["tests.testapp.views.tenant_scope", tenant_scope], ids=["dotted-path", "callable"]
)
def test_scope_setting_decides_the_scope(client: Any, settings: Any, alice: Any, hook: Any) -> None:
    settings.IDEMPOTENCY = {"SCOPE": hook}
    first = send(client, headers={"X-Tenant": "a"})

    other_tenant = send(client, headers={"X-Tenant": "b"})
    same_caller = send(client, headers={"X-Tenant": "a"})
    client.force_login(alice)  # another caller of tenant a: the same scope, not its replay
    other_caller = send(client, headers={"X-Tenant": "a"})

    assert "Idempotent-Replayed" not in other_tenant
    assert same_caller["Idempotent-Replayed"] == "true"
    assert same_caller.content == first.content
    assert_problem(other_caller, 422, "key-reused")
    assert scopes() == {"tenant:a", "tenant:b"}


@pytest.mark.parametrize("path", ["/tenant-path/", "/tenant-callable/"])
def test_decorator_scope_option_decides_the_scope(client: Any, path: str) -> None:
    send(client, path, headers={"X-Tenant": "a"})

    other_tenant = send(client, path, headers={"X-Tenant": "b"})
    same_tenant = send(client, path, headers={"X-Tenant": "a"})

    assert "Idempotent-Replayed" not in other_tenant
    assert same_tenant["Idempotent-Replayed"] == "true"
    assert scopes() == {"tenant:a", "tenant:b"}


def test_decorator_scope_option_wins_over_the_setting(client: Any, settings: Any) -> None:
    settings.IDEMPOTENCY = {"SCOPE": "tests.test_scope.constant_scope"}

    send(client, "/tenant-path/", headers={"X-Tenant": "a"})
    send(client, headers={"X-Tenant": "a"})

    assert scopes() == {"tenant:a", "constant"}


def constant_scope(request: Any) -> str:
    return "constant"


def failing_scope(request: Any) -> str:
    raise LookupError("the tenant service is down")


@pytest.mark.parametrize("path", ["/plain/", "/viewset/"], ids=["django", "drf"])
@pytest.mark.parametrize(
    "hook", ["tests.test_scope.failing_scope", failing_scope], ids=["dotted-path", "callable"]
)
def test_a_scope_setting_that_raises_is_500_misconfigured_runs_no_view_and_stores_nothing(
    client: Any, settings: Any, caplog: Any, hook: Any, path: str
) -> None:
    settings.IDEMPOTENCY = {"SCOPE": hook}

    response = send(client, path, key="scope-fails")

    assert_problem(response, 500, "misconfigured")
    assert Charge.objects.count() == 0
    assert not IdempotencyRecord.objects.exists()
    [record] = [r for r in caplog.records if r.name == "idempotency"]
    assert "SCOPE function" in record.getMessage() and record.levelname == "ERROR"
    assert record.exc_info is not None and record.exc_info[0] is LookupError


def test_default_scope_names_the_user_or_anonymous(rf: Any, alice: Any) -> None:
    request = rf.post("/")
    request.user = alice
    assert default_scope(request) == f"user:{alice.pk}"

    request = rf.post("/")
    assert default_scope(request) == "anonymous"
