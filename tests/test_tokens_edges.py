"""Edges of server-issued tokens found in review 13: issue_token's ttl, and
IdempotencyTokenView for a caller no token can serve."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.test import Client
from rest_framework.authtoken.models import Token

from idempotency import issue_token
from idempotency.tokens import verify_token
from tests.test_http import assert_problem

pytestmark = pytest.mark.django_db


def anonymous_request(rf: Any) -> Any:
    request = rf.get("/")
    request.user = AnonymousUser()
    return request


@pytest.mark.parametrize("ttl", [0, -60, 0.0, timedelta(0), timedelta(seconds=-1)])
def test_issue_token_refuses_a_ttl_that_makes_a_dead_token(rf: Any, ttl: Any) -> None:
    """issue_token(ttl=0) hands out a token every submit refuses as expired: the
    form can never be sent. TTL itself is refused at 0 (E007)."""
    with pytest.raises(ValueError, match=r"issue_token\(ttl=\.\.\.\).*above zero"):
        issue_token(anonymous_request(rf), ttl=ttl)


def test_a_token_with_a_ttl_past_year_9999_is_refused_when_issued_not_a_500_on_submit(
    rf: Any,
) -> None:
    """The view's ttl and TTL are refused past the year 9999; issue_token's ttl
    was not, and the record it then claimed overflowed on submit."""
    with pytest.raises(ValueError, match="9999"):
        issue_token(anonymous_request(rf), ttl=timedelta(days=365 * 8100))


@pytest.mark.parametrize("ttl", ["3600", True, float("inf"), float("nan")])
def test_issue_token_refuses_a_ttl_that_is_not_a_duration(rf: Any, ttl: Any) -> None:
    with pytest.raises((TypeError, ValueError), match=r"issue_token\(ttl=\.\.\.\)"):
        issue_token(anonymous_request(rf), ttl=ttl)


@pytest.mark.parametrize("ttl", [1, 1.5, 3600, timedelta(days=365)])
def test_issue_token_accepts_a_positive_ttl(rf: Any, ttl: Any) -> None:
    request = anonymous_request(rf)

    assert verify_token(issue_token(request, ttl=ttl), request)


def test_token_view_refuses_an_anonymous_caller_under_refuse_instead_of_a_useless_token(
    settings: Any,
) -> None:
    settings.IDEMPOTENCY = {"ANONYMOUS": "refuse"}

    response = Client().get("/token/")

    assert_problem(response, 400, "anonymous-refused")
    assert "token" not in response.json()


def test_token_view_serves_a_signed_in_caller_under_refuse(settings: Any) -> None:
    settings.IDEMPOTENCY = {"ANONYMOUS": "refuse"}
    alice = Token.objects.create(user=User.objects.create_user("edge-alice"))
    as_alice = {"Authorization": f"Token {alice.key}"}

    issued = Client().get("/token/", headers=as_alice)
    paid = Client().post("/token-pay/", {"amount": 3}, content_type="application/json",
                         headers={**as_alice, "Idempotency-Key": issued.json()["token"]})  # fmt: skip

    assert issued.status_code == 200
    assert paid.status_code == 201


def test_token_view_serves_an_anonymous_caller_under_share() -> None:
    response = Client().get("/token/")

    assert response.status_code == 200
    assert response.json()["token"]


def test_forms_docs_do_not_promise_the_500_the_tag_no_longer_raises() -> None:
    """docs/forms.md said the tag raises AnonymousRefused (a 500) for a visitor
    without a session under "session" and under "refuse", and that
    IdempotencyTokenView fails with a 500; the tag issues a token in both
    cases (tests/test_tokens.py asserts the page renders)."""
    from pathlib import Path

    text = Path(__file__).parents[1].joinpath("docs", "forms.md").read_text()

    assert "raises `AnonymousRefused`" not in text
    assert "fails the same way, with a 500" not in text
    assert "raises as above" not in text
