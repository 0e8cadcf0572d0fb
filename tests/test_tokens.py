"""Contract section 8: server-issued one-time tokens against double submits."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import signing
from django.db import connection
from django.template import Context, Template, TemplateSyntaxError
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token

from idempotency import issue_token
from idempotency.keys import digest
from idempotency.models import IdempotencyRecord
from idempotency.tokens import verify_token
from tests.test_http import assert_problem
from tests.testapp.models import Charge

pytestmark = pytest.mark.django_db

RECORDS = IdempotencyRecord._meta.db_table


def token_on_page(client: Client) -> str:
    page = client.get("/form/").content.decode()
    match = re.search(r'name="idempotency_token" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def submit(client: Client, token: str | None, amount: int = 5, **extra: Any) -> Any:
    data: dict[str, Any] = {"amount": amount}
    if token is not None:
        data["idempotency_token"] = token
    return client.post("/pay/", data, **extra)


def record_queries(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if RECORDS in q["sql"]]


def test_the_tag_renders_a_hidden_field_with_a_fresh_token(client: Client) -> None:
    first, second = token_on_page(client), token_on_page(client)

    assert first != second
    assert not IdempotencyRecord.objects.exists()


def test_issuing_a_token_writes_nothing_anywhere(rf: RequestFactory) -> None:
    request = rf.get("/form/")
    with CaptureQueriesContext(connection) as captured:
        tokens = {issue_token(request) for _ in range(50)}

    assert len(tokens) == 50
    assert captured.captured_queries == []


def test_the_tag_without_the_request_in_the_context_says_how_to_fix_it() -> None:
    with pytest.raises(TemplateSyntaxError, match="context_processors.request"):
        Template("{% load idempotency %}{% idempotency_token %}").render(Context({}))


def test_a_double_submit_runs_once_and_replays_the_same_redirect(client: Client) -> None:
    token = token_on_page(client)

    first = submit(client, token)
    second = submit(client, token)

    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"]
    assert second["Idempotent-Replayed"] == "true"
    assert Charge.objects.count() == 1
    assert IdempotencyRecord.objects.get().key == digest(token)
    assert client.get(second["Location"]).content.startswith(b"Paid: charge ")


def test_a_new_page_is_a_new_token_and_a_new_payment(client: Client) -> None:
    submit(client, token_on_page(client))
    submit(client, token_on_page(client))

    assert Charge.objects.count() == 2


def test_the_same_token_with_another_body_is_422(client: Client) -> None:
    token = token_on_page(client)
    submit(client, token, amount=5)

    assert_problem(submit(client, token, amount=6), 422, "key-reused")


def altered(token: str) -> str:
    value, _, signature = token.rpartition(":")
    return f"{value}:{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda client: None, id="missing"),
        pytest.param(lambda client: "", id="empty"),
        pytest.param(lambda client: "made-up-token", id="forged"),
        pytest.param(lambda client: altered(token_on_page(client)), id="altered"),
        pytest.param(
            lambda client: signing.dumps({"n": "x", "s": "y", "e": 2**40}, salt="other"),
            id="signed-for-something-else",
        ),
        pytest.param(lambda client: "x" * 5000, id="huge"),
    ],
)
def test_a_token_view_refuses_anything_but_its_own_token_before_the_store(
    client: Client, make: Any
) -> None:
    token = make(client)
    with CaptureQueriesContext(connection) as captured:
        response = submit(client, token)

    assert_problem(response, 400, "token-invalid")
    assert record_queries(captured) == []
    assert Charge.objects.count() == 0


def test_a_token_issued_to_another_scope_is_refused(client: Client) -> None:
    anonymous_token = token_on_page(client)
    client.force_login(User.objects.create_user("signed-in-later"))

    assert_problem(submit(client, anonymous_token), 400, "token-invalid")
    assert submit(client, token_on_page(client)).status_code == 302


def test_an_expired_token_is_refused(client: Client, rf: RequestFactory) -> None:
    token = issue_token(rf.get("/form/"), ttl=1)
    payload = signing.loads(token, salt="django-idempotency.token")
    payload["e"] = int(time.time()) - 1  # issued long ago (time as data)
    expired = signing.dumps(payload, salt="django-idempotency.token", compress=False)

    problem = assert_problem(submit(client, expired), 400, "token-invalid")
    assert "expired" in problem["detail"]
    assert verify_token(token, rf.get("/form/")) == token  # the fresh one is fine


def test_a_view_without_token_true_takes_the_field_of_a_url_encoded_form_as_a_key(
    client: Client,
) -> None:
    # A multipart POST's field is read by token views only (docs/forms.md).
    form = "application/x-www-form-urlencoded"
    first = client.post("/form-key/", "idempotency_token=any-client-chosen-key", form)
    second = client.post("/form-key/", "idempotency_token=any-client-chosen-key", form)

    assert first.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert IdempotencyRecord.objects.get().key == digest("any-client-chosen-key")


def test_the_header_wins_over_the_form_field(client: Client) -> None:
    client.post("/form-key/", {"idempotency_token": "field"}, headers={"Idempotency-Key": "hdr"})

    assert IdempotencyRecord.objects.get().key == digest("hdr")


def test_drf_clients_get_a_token_bound_to_their_authenticated_scope(client: Client) -> None:
    alice = Token.objects.create(user=User.objects.create_user("tok-alice"))
    bob = Token.objects.create(user=User.objects.create_user("tok-bob"))
    as_alice = {"Authorization": f"Token {alice.key}"}
    issued = client.get("/token/", headers=as_alice)
    token = issued.json()["token"]

    first = client.post("/token-pay/", {"amount": 3}, content_type="application/json",
                        headers={**as_alice, "Idempotency-Key": token})  # fmt: skip
    again = client.post("/token-pay/", {"amount": 3}, content_type="application/json",
                        headers={**as_alice, "Idempotency-Key": token})  # fmt: skip
    stolen = client.post("/token-pay/", {"amount": 3}, content_type="application/json",
                         headers={"Authorization": f"Token {bob.key}", "Idempotency-Key": token})  # fmt: skip

    assert issued["Cache-Control"] == "no-store"
    assert issued.json()["field"] == "idempotency_token"
    assert first.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert_problem(stolen, 400, "token-invalid")
    assert Charge.objects.count() == 1


@hypothesis_settings(max_examples=150, deadline=None, database=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(token=st.text(max_size=600) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_hostile_tokens_never_give_a_500_and_never_reach_the_store(token: str) -> None:
    client = Client()
    with CaptureQueriesContext(connection) as captured:
        response = client.post("/pay/", {"amount": 5, "idempotency_token": token})

    assert response.status_code == 400
    assert record_queries(captured) == []


def test_a_form_page_renders_for_a_visitor_without_a_session_under_anonymous_session(
    settings: Any,
) -> None:
    settings.IDEMPOTENCY = {"ANONYMOUS": "session"}
    client = Client()

    token = token_on_page(client)  # the visitor gets a session, as a CSRF cookie is given
    first, second = submit(client, token), submit(client, token)

    assert first.status_code == 302 and second["Idempotent-Replayed"] == "true"
    assert Charge.objects.count() == 1


def test_a_form_page_renders_under_anonymous_refuse_and_its_submit_is_refused(
    settings: Any,
) -> None:
    settings.IDEMPOTENCY = {"ANONYMOUS": "refuse"}
    client = Client()

    token = token_on_page(client)

    assert_problem(submit(client, token), 400, "anonymous-refused")
    assert Charge.objects.count() == 0
