"""Anonymous session scopes that survive a changing session key, token pages
kept out of caches, and token expiries rounded up (contract sections 3 and 8)."""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core import signing
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template import engines
from django.template.response import TemplateResponse
from django.test import AsyncClient, Client, RequestFactory
from django.urls import path
from django.views.decorators.cache import cache_page
from rest_framework.decorators import api_view
from rest_framework.response import Response

from idempotency import idempotent, issue_token
from idempotency.models import IdempotencyRecord
from idempotency.scope import _secret_digest
from idempotency.tokens import _SALT, verify_token
from tests.test_http import assert_problem
from tests.testapp.models import Charge

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

FORM = (
    '{% load idempotency %}<form method="post">{% idempotency_token %}'
    '<input name="amount" value="5"><button>Pay</button></form>'
)
SIGNED_COOKIES = "django.contrib.sessions.backends.signed_cookies"
LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def render_form(request: HttpRequest) -> str:
    return engines["django"].from_string(FORM).render({}, request)


def form_page(request: HttpRequest) -> HttpResponse:
    """A page with no door."""
    return HttpResponse(render_form(request))


def note(request: HttpRequest) -> HttpResponse:
    """Writes the session: a signed_cookies session gets a new key (cookie)."""
    request.session["notes"] = request.session.get("notes", 0) + 1
    return HttpResponse("noted")


def charge(request: HttpRequest) -> HttpResponse:
    created = Charge.objects.create(amount=int(request.POST.get("amount") or 0), label="edge")
    request.session["last_charge"] = created.pk  # the submit writes the session too
    return HttpResponseRedirect(f"/paid/{created.pk}/")


pay = idempotent(token=True)(charge)
keyed_pay = idempotent(charge)


@cache_page(60)
@idempotent(token=True)
def cached_form(request: HttpRequest) -> HttpResponse:
    """GET renders the form, POST takes it: one URL, cached by cache_page."""
    if request.method == "GET":
        return HttpResponse(render_form(request))
    return charge(request)


@cache_page(60)
@idempotent(token=True)
def cached_lazy_form(request: HttpRequest) -> HttpResponse:
    """The token is issued only when the TemplateResponse renders, after the view returns."""
    if request.method == "GET":
        return TemplateResponse(request, engines["django"].from_string(FORM))
    return charge(request)


@cache_page(60)
def cached_doorless_form(request: HttpRequest) -> HttpResponse:
    return HttpResponse(render_form(request))


@cache_page(60)
def cached_doorless_lazy_form(request: HttpRequest) -> TemplateResponse:
    return TemplateResponse(request, engines["django"].from_string(FORM))


@idempotent(token=True)
async def async_lazy_form(request: HttpRequest) -> TemplateResponse:
    return TemplateResponse(request, engines["django"].from_string(FORM))


@api_view(["GET", "POST"])
@idempotent(token=True)
def drf_token(request: Any) -> Response:
    return Response({"token": issue_token(request)})


@idempotent(token=True)
def plain_page(request: HttpRequest) -> HttpResponse:
    return HttpResponse("no token here")


def nonce(request: HttpRequest) -> HttpResponse:
    return HttpResponse(secrets.token_hex(8))


urlpatterns = [
    path("nonce/", nonce),
    path("form/", form_page),
    path("note/", note),
    path("pay/", pay),
    path("keyed-pay/", keyed_pay),
    path("cached-form/", cached_form),
    path("cached-lazy-form/", cached_lazy_form),
    path("cached-doorless-form/", cached_doorless_form),
    path("cached-doorless-lazy-form/", cached_doorless_lazy_form),
    path("async-lazy-form/", async_lazy_form),
    path("drf-token/", drf_token),
    path("plain-page/", plain_page),
]


def token_in(response: Any) -> str:
    match = re.search(r'name="idempotency_token" value="([^"]+)"', response.content.decode())
    assert match, response.content
    return match.group(1)


def session_cookie(client: Client, settings: Any) -> str:
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def hold(client: Client, settings: Any, cookie: str) -> None:
    """The client holds ``cookie``, as a browser that never got a later response does."""
    client.cookies[settings.SESSION_COOKIE_NAME] = cookie


def scopes() -> set[str]:
    return set(IdempotencyRecord.objects.values_list("scope", flat=True))


# 1. ANONYMOUS = "session": the visitor, not the session key, is the scope.


@pytest.fixture
def signed_cookies(settings: Any) -> None:
    settings.SESSION_ENGINE = SIGNED_COOKIES
    settings.IDEMPOTENCY = {"ANONYMOUS": "session"}


@pytest.mark.usefixtures("signed_cookies")
def test_a_token_form_with_signed_cookie_sessions_runs_once_and_its_retry_replays(
    settings: Any,
) -> None:
    browser = Client()
    token = token_in(browser.get("/form/"))  # the first visit: the tag gives a session
    issued_cookie = session_cookie(browser, settings)
    browser.get("/note/")  # another page writes the session: a new cookie
    before_submit = session_cookie(browser, settings)
    assert before_submit != issued_cookie

    first = browser.post("/pay/", {"amount": 5, "idempotency_token": token})
    after_submit = session_cookie(browser, settings)
    assert after_submit != before_submit  # the submit wrote the session as well
    hold(browser, settings, before_submit)  # its response was lost: the retry
    retry = browser.post("/pay/", {"amount": 5, "idempotency_token": token})
    hold(browser, settings, after_submit)  # the response arrived, then a resubmit
    resubmit = browser.post("/pay/", {"amount": 5, "idempotency_token": token})

    assert first.status_code == 302
    assert retry["Idempotent-Replayed"] == resubmit["Idempotent-Replayed"] == "true"
    assert retry["Location"] == resubmit["Location"] == first["Location"]
    assert Charge.objects.count() == 1
    assert len(scopes()) == 1


@pytest.mark.usefixtures("signed_cookies")
def test_a_signed_cookie_session_from_before_the_visitor_id_keeps_one_scope(
    settings: Any,
) -> None:
    """A session that holds no visitor id yet (written by another view, or
    before this version): the first request derives the id from the cookie it
    carries, so its retry with that cookie and later requests with the newer
    cookie find the same scope."""
    browser = Client()
    browser.get("/note/")
    old_cookie = session_cookie(browser, settings)
    key = {"HTTP_IDEMPOTENCY_KEY": "5f0c8a9e-visitor"}

    first = browser.post("/keyed-pay/", {"amount": 5}, **key)
    new_cookie = session_cookie(browser, settings)
    hold(browser, settings, old_cookie)
    retry_with_old = browser.post("/keyed-pay/", {"amount": 5}, **key)
    hold(browser, settings, new_cookie)
    retry_with_new = browser.post("/keyed-pay/", {"amount": 5}, **key)

    assert new_cookie != old_cookie
    assert first.status_code == 302
    assert retry_with_old["Idempotent-Replayed"] == retry_with_new["Idempotent-Replayed"] == "true"
    assert Charge.objects.count() == 1


@pytest.mark.usefixtures("signed_cookies")
def test_another_visitor_with_signed_cookie_sessions_has_another_scope(settings: Any) -> None:
    browser, other = Client(), Client()
    token = token_in(browser.get("/form/"))
    other.get("/form/")

    browser.post("/pay/", {"amount": 5, "idempotency_token": token})
    stolen = other.post("/pay/", {"amount": 5, "idempotency_token": token})

    assert_problem(stolen, 400, "token-invalid")
    assert Charge.objects.count() == 1


def test_a_token_form_with_database_sessions_runs_once_and_keeps_the_old_scope(
    settings: Any,
) -> None:
    """On a database session the key stays, so the visitor id is the digest
    of it, the scope this package has always given the session: records
    written before the visitor id keep matching."""
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    settings.IDEMPOTENCY = {"ANONYMOUS": "session"}
    browser = Client()
    browser.get("/note/")  # a session from before the visitor id
    key = browser.session.session_key
    token = token_in(browser.get("/form/"))

    first = browser.post("/pay/", {"amount": 5, "idempotency_token": token})
    retry = browser.post("/pay/", {"amount": 5, "idempotency_token": token})

    assert first.status_code == 302 and retry["Idempotent-Replayed"] == "true"
    assert Charge.objects.count() == 1
    assert scopes() == {f"session:{_secret_digest(key)}"}
    assert browser.session["_idempotency_visitor"] == _secret_digest(key)


def test_a_database_session_without_a_key_is_still_refused(settings: Any) -> None:
    settings.IDEMPOTENCY = {"ANONYMOUS": "session"}

    response = Client().post("/keyed-pay/", {"amount": 5}, HTTP_IDEMPOTENCY_KEY="k-no-session")

    assert_problem(response, 400, "anonymous-refused")
    assert Charge.objects.count() == 0


# 2. A page that carries a token is kept out of caches.


@pytest.fixture
def locmem_cache(settings: Any) -> None:
    settings.CACHES = LOCMEM
    from django.core.cache import cache

    cache.clear()


def assert_never_cached(response: Any) -> None:
    cache_control = {part.strip() for part in response["Cache-Control"].split(",")}
    assert {"no-store", "private", "no-cache", "max-age=0"} <= cache_control
    assert "Cookie" in {part.strip() for part in response["Vary"].split(",")}


@pytest.mark.usefixtures("locmem_cache")
@pytest.mark.parametrize("url", ["/cached-form/", "/cached-lazy-form/"])
def test_cache_page_over_a_token_view_gives_every_get_a_fresh_token(url: str) -> None:
    first, second = Client().get(url), Client().get(url)

    assert token_in(first) != token_in(second)
    assert_never_cached(first)
    assert_never_cached(second)


@pytest.mark.usefixtures("locmem_cache")
def test_under_anonymous_share_a_second_visitor_of_a_cached_page_runs_their_own_submit() -> None:
    alice, bob = Client(), Client()
    alice_token = token_in(alice.get("/cached-form/"))
    alice_paid = alice.post("/cached-form/", {"amount": 5, "idempotency_token": alice_token})
    bob_token = token_in(bob.get("/cached-form/"))
    bob_paid = bob.post("/cached-form/", {"amount": 5, "idempotency_token": bob_token})

    assert alice_paid.status_code == bob_paid.status_code == 302
    assert "Idempotent-Replayed" not in bob_paid
    assert alice_paid["Location"] != bob_paid["Location"]
    assert Charge.objects.count() == 2


@pytest.mark.usefixtures("locmem_cache")
@pytest.mark.parametrize("url", ["/cached-doorless-form/", "/cached-doorless-lazy-form/"])
def test_cache_page_over_a_page_with_no_door_does_not_store_its_token(url: str) -> None:
    """Django's cache framework cannot store it: the tag tells it not to. The
    headers for other caches need a door (or @never_cache, docs/forms.md)."""
    first, second = Client().get(url), Client().get(url)

    assert token_in(first) != token_in(second)


@pytest.mark.usefixtures("locmem_cache")
def test_the_site_wide_cache_middleware_does_not_store_a_token_page(settings: Any) -> None:
    settings.MIDDLEWARE = [
        "django.middleware.cache.UpdateCacheMiddleware",
        *settings.MIDDLEWARE,
        "django.middleware.cache.FetchFromCacheMiddleware",
    ]
    settings.CACHE_MIDDLEWARE_SECONDS = 60

    first, second = Client().get("/form/"), Client().get("/form/")
    nonce, cached_nonce = Client().get("/nonce/"), Client().get("/nonce/")

    assert token_in(first) != token_in(second)
    assert nonce.content == cached_nonce.content  # the middleware caches other pages


def test_an_async_token_view_makes_its_lazily_rendered_page_uncacheable() -> None:
    rendered = async_to_sync(AsyncClient().get)("/async-lazy-form/")

    assert token_in(rendered)
    assert_never_cached(rendered)


def test_a_drf_response_that_issues_a_token_is_uncacheable() -> None:
    response = Client().get("/drf-token/")

    assert response.json()["token"]
    assert_never_cached(response)


def test_a_page_that_issues_no_token_keeps_its_headers() -> None:
    response = Client().get("/plain-page/")

    assert not response.has_header("Cache-Control")


# 3. A token's expiry is rounded up.


def test_a_token_with_a_ttl_under_a_second_is_valid_right_after_issue(
    rf: RequestFactory,
) -> None:
    request = rf.get("/form/")
    before = time.time()

    token = issue_token(request, ttl=0.5)

    expires = signing.loads(token, salt=_SALT)["e"]
    assert expires >= before + 0.5  # never before the ttl is over
    assert verify_token(token, request) == token
