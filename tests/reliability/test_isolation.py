"""Cross-scope isolation: a key in one scope tells another scope nothing.

Caller B sends caller A's key with A's body, with another body, and while A's
request is still running. B must never get A's response, never 409 or 422
because of A's record, and never disturb A: A's in-progress record keeps its
version and lock, and A's replay still answers A's response. Scopes are users
(session and DRF token), anonymous vs authenticated, and a custom SCOPE by
the X-Tenant header with tenants that differ only by case or trailing space.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.authtoken.models import Token

from idempotency.keys import digest
from idempotency.models import IdempotencyRecord, Status
from tests.test_http import assert_problem, claim_in_progress, send
from tests.testapp.models import Charge

pytestmark = pytest.mark.django_db

KEY = "shared-key"
A_BODY = {"amount": 5}
OTHER_BODY = {"amount": 7}
TENANT_PATH = "/tenant-callable/"


def record_state(scope: str) -> tuple[Any, ...]:
    record = IdempotencyRecord.objects.get(scope=scope, key=digest(KEY))
    return (record.status, record.version, record.locked_until, record.fingerprint,
            record.response_body and bytes(record.response_body))  # fmt: skip


def assert_fresh_run(response: Any, a_response: Any) -> None:
    """B's answer is B's own run, as for a key nobody ever used."""
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert response.content != a_response.content
    assert Charge.objects.filter(pk=response.json()["id"]).exists()


def clients_for(kind: str) -> tuple[Client, Client, dict[str, str], dict[str, str], str]:
    """Two callers A and B of one kind: (client A, client B, headers A,
    headers B, path)."""
    a, b = Client(), Client()
    if kind == "session-users":
        a.force_login(User.objects.create_user("alice"))
        b.force_login(User.objects.create_user("bob"))
        return a, b, {}, {}, "/plain/"
    if kind == "token-users":
        tokens = [Token.objects.create(user=User.objects.create_user(n)) for n in ("al", "bo")]
        return (a, b, {"Authorization": f"Token {tokens[0].key}"},
                {"Authorization": f"Token {tokens[1].key}"}, "/api-authenticated/")  # fmt: skip
    if kind == "anonymous-then-user":
        b.force_login(User.objects.create_user("bob"))
        return a, b, {}, {}, "/plain/"
    if kind == "user-then-anonymous":
        a.force_login(User.objects.create_user("alice"))
        return a, b, {}, {}, "/plain/"
    tenant_a, tenant_b = kind.split("|")
    return a, b, {"X-Tenant": tenant_a}, {"X-Tenant": tenant_b}, TENANT_PATH


CALLER_PAIRS = [
    "session-users",
    "token-users",
    "anonymous-then-user",
    "user-then-anonymous",
    "acme|ACME",
    "acme|Acme",
    "acme|acme ",
    "acme |acme",
    "acme|acmé",
    "acme|other",
]


def newest_scope() -> str:
    """The scope of the record the last request created."""
    return IdempotencyRecord.objects.latest("id").scope


@pytest.mark.parametrize("kind", CALLER_PAIRS)
def test_another_scope_with_the_same_key_and_body_runs_its_own_request(kind):
    a, b, a_headers, b_headers, path = clients_for(kind)
    a_first = send(a, path, A_BODY, key=KEY, headers=a_headers)
    a_scope = newest_scope()
    a_record = record_state(a_scope)

    b_first = send(b, path, A_BODY, key=KEY, headers=b_headers)
    b_scope = newest_scope()
    b_retry = send(b, path, A_BODY, key=KEY, headers=b_headers)
    a_replay = send(a, path, A_BODY, key=KEY, headers=a_headers)

    assert b_scope != a_scope
    assert_fresh_run(b_first, a_first)
    assert (b_retry.status_code, b_retry["Idempotent-Replayed"]) == (201, "true")
    assert b_retry.content == b_first.content
    assert (a_replay.status_code, a_replay["Idempotent-Replayed"]) == (201, "true")
    assert a_replay.content == a_first.content
    assert record_state(a_scope) == a_record
    assert Charge.objects.count() == 2


@pytest.mark.parametrize("kind", CALLER_PAIRS)
def test_another_scope_with_the_same_key_and_another_body_is_not_422(kind):
    a, b, a_headers, b_headers, path = clients_for(kind)
    a_first = send(a, path, A_BODY, key=KEY, headers=a_headers)
    a_scope = newest_scope()
    a_record = record_state(a_scope)

    b_first = send(b, path, OTHER_BODY, key=KEY, headers=b_headers)

    assert_fresh_run(b_first, a_first)
    assert b_first.json()["amount"] == OTHER_BODY["amount"]
    assert record_state(a_scope) == a_record
    a_replay = send(a, path, A_BODY, key=KEY, headers=a_headers)
    assert (a_replay["Idempotent-Replayed"], a_replay.content) == ("true", a_first.content)
    # A's own scope still refuses A's key for another body: the key is taken there.
    assert_problem(send(a, path, OTHER_BODY, key=KEY, headers=a_headers), 422, "key-reused")


@pytest.mark.parametrize("body", [A_BODY, OTHER_BODY], ids=["same-body", "other-body"])
@pytest.mark.parametrize("kind", CALLER_PAIRS)
def test_another_scope_is_not_blocked_by_a_running_request_and_does_not_disturb_it(kind, body):
    a, b, a_headers, b_headers, path = clients_for(kind)
    # Learn A's scope from a throwaway request, then claim A's key as a
    # running request does just before its view.
    send(a, path, A_BODY, key="probe", headers=a_headers)
    a_scope = newest_scope()
    IdempotencyRecord.objects.all().delete()
    Charge.objects.all().delete()
    a_principal = a_scope if path != TENANT_PATH else "anonymous"
    claim_in_progress(path, A_BODY, key=KEY, scope=a_scope, principal=a_principal)
    a_record = record_state(a_scope)
    assert a_record[0] == Status.IN_PROGRESS

    b_first = send(b, path, body, key=KEY, headers=b_headers)
    a_retry = send(a, path, A_BODY, key=KEY, headers=a_headers)

    assert b_first.status_code == 201
    assert "Idempotent-Replayed" not in b_first
    assert b_first.json()["amount"] == body["amount"]
    assert record_state(a_scope) == a_record  # same version, same lock
    assert_problem(a_retry, 409, "request-in-progress")  # A's own scope still sees A running
    assert Charge.objects.count() == 1
    b_record = IdempotencyRecord.objects.exclude(scope=a_scope).get(key=digest(KEY))
    assert (b_record.status, b_record.version) == (Status.COMPLETED, 2)


def test_tenants_that_differ_only_by_case_or_trailing_space_are_four_scopes():
    tenants = ["acme", "ACME", "Acme", "acme "]
    answers = [
        send(Client(), TENANT_PATH, A_BODY, key=KEY, headers={"X-Tenant": t}) for t in tenants
    ]

    assert [a.status_code for a in answers] == [201] * 4
    assert len({a.content for a in answers}) == 4
    assert sorted(IdempotencyRecord.objects.values_list("scope", flat=True)) == sorted(
        f"tenant:{t}" for t in tenants
    )
    for tenant, first in zip(tenants, answers, strict=True):
        replay = send(Client(), TENANT_PATH, A_BODY, key=KEY, headers={"X-Tenant": tenant})
        assert (replay["Idempotent-Replayed"], json.loads(replay.content)) == (
            "true",
            json.loads(first.content),
        )
    assert Charge.objects.count() == 4


def test_a_scope_with_a_control_character_is_refused_not_stored():
    # It would forge fields of a log line, and PostgreSQL refuses NUL.
    for tenant in ("acme\t", "acme\x00", "ac\nme"):
        response = send(Client(), TENANT_PATH, A_BODY, key=KEY, headers={"X-Tenant": tenant})
        assert_problem(response, 500, "misconfigured")

    assert not IdempotencyRecord.objects.exists()
    assert Charge.objects.count() == 0


# A property over random principals, scopes and keys (issue "Security")

from django.contrib.auth.models import Group  # noqa: E402
from hypothesis import HealthCheck, given  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.reliability.faults import LONG, mode  # noqa: E402

# Who sends, and how: two users (one by session, one by token too), two bare
# credentials, a principal model that is not the user model (as request.auth
# and as request.user: the same principal), and the anonymous caller.
PRINCIPALS = ("alice-session", "alice-token", "bob", "key-1", "key-2", "device", "device-as-user",
              "anonymous")  # fmt: skip
SAME_PRINCIPAL = {"alice-token": "alice-session", "device-as-user": "device"}
CALLS = st.lists(
    st.tuples(
        st.sampled_from(PRINCIPALS),
        st.sampled_from(["k1", "k2"]),  # few keys: collisions are the point
        st.sampled_from([1, 2]),  # the amount: two bodies per key
        st.booleans(),  # a tenant scope wider than the principal
    ),
    min_size=2,
    max_size=10,
)


@hypothesis_settings(
    max_examples=mode(40, 400), deadline=None, derandomize=not LONG, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
@given(calls=CALLS)
def test_no_request_ever_receives_a_response_made_for_another_principal(calls):
    IdempotencyRecord.objects.all().delete()
    Charge.objects.all().delete()
    alice = User.objects.get_or_create(username="prop-alice")[0]
    bob = User.objects.get_or_create(username="prop-bob")[0]
    device = Group.objects.get_or_create(name="prop-device")[0]
    token = Token.objects.get_or_create(user=alice)[0]
    clients = {name: Client() for name in PRINCIPALS}
    clients["alice-session"].force_login(alice)
    clients["bob"].force_login(bob)
    headers = {
        "alice-token": {"Authorization": f"Token {token.key}"},
        "key-1": {"X-Api-Key": "prop-key-1"},
        "key-2": {"X-Api-Key": "prop-key-2"},
        "device": {"X-Device": str(device.pk)},
        "device-as-user": {"X-Device": str(device.pk), "X-Device-As": "user"},
    }
    made_for: dict[int, str] = {}  # charge id -> the principal whose request made it
    for who, key, amount, tenant in calls:
        principal = SAME_PRINCIPAL.get(who, who)
        path = "/principal-tenant/" if tenant else "/principal/"
        response = send(clients[who], path, {"amount": amount}, key=key,
                        headers={**headers.get(who, {}), "X-Tenant": "acme"})  # fmt: skip
        if response.status_code == 201 and "Idempotent-Replayed" not in response:
            made_for[response.json()["id"]] = principal
        elif response.status_code == 201:
            assert made_for[response.json()["id"]] == principal, (who, calls)
        else:
            assert response.status_code == 422, (who, response.status_code, calls)
