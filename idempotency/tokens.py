"""Server-issued one-time tokens: idempotency keys for HTML forms (contract section 8).

A form has no ``Idempotency-Key`` header, so the page carries a key the
server issued: ``{% idempotency_token %}`` renders it as a hidden field, and
the view takes its key from that field. The token is signed with Django's
signing framework, bound to the scope it was issued to and to an expiry, so
issuing one writes nothing anywhere and unused tokens need no purge. Its first
use runs the view; a second submit of the same form is a retry with the same
key and replays the first answer (the same redirect).
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from datetime import timedelta
from io import BytesIO
from typing import Any

from django.core import signing
from django.http import HttpRequest, QueryDict

from idempotency import validation
from idempotency.conf import as_timedelta, idempotency_settings
from idempotency.problems import AnonymousRefused, TokenInvalid
from idempotency.scope import default_scope, new_visitor

FIELD = "idempotency_token"
_SALT = "django-idempotency.token"
# A token longer than this is not one of ours: refused before any decoding.
MAX_TOKEN_LENGTH = 512
# The scope of a token issued to a caller no submit can come from (an
# anonymous visitor under ANONYMOUS = "refuse"): every submit of it is refused.
REFUSED_SCOPE = "\x00refused"


def issue_token(request: HttpRequest, ttl: timedelta | float | None = None) -> str:
    """A new token for ``request``'s scope, valid for ``ttl`` (default ``TTL``).

    ``ttl`` follows the rules of ``TTL``: above zero (a token that has already
    expired could never be submitted) and ending before the year 9999 (the
    record a submit claims must fit every database); else ``ValueError``, or
    ``TypeError`` for a value that is not a duration.
    """
    if ttl is not None:
        invalid = validation.duration("issue_token(ttl=...)", ttl)
        if invalid is not None:
            raise invalid.exception()
    lifetime = idempotency_settings.TTL if ttl is None else as_timedelta(ttl)
    payload = {
        "n": secrets.token_urlsafe(16),
        "s": _scope_tag(_issued_scope(request)),
        # Rounded up: a token may outlive its ttl by under a second, never
        # arrive expired (a ttl under a second, truncated, could).
        "e": math.ceil(time.time() + lifetime.total_seconds()),
    }
    mark_issued(request)
    return signing.dumps(payload, salt=_SALT, compress=False)


# Marks the HttpRequest (which DRF's Request wraps) that issued a token: the
# doors make its response uncacheable (http.uncacheable).
ISSUED = "_idempotency_token_issued"


def mark_issued(request: HttpRequest) -> None:
    """Keep the page that carries a token out of every cache.

    A cached page gives every visitor the same token, and under
    ``ANONYMOUS = "share"`` one visitor's submit would replay another's
    answer. Django's cache framework (``cache_page``, ``UpdateCacheMiddleware``)
    stores a response only while the request's ``_cache_update_cache`` is
    true, which ``FetchFromCacheMiddleware`` sets before the view and
    ``UpdateCacheMiddleware`` reads after the response is rendered, so
    clearing it here keeps the page out of Django's caches whether or not a
    door passes the request. The door also sends never-cache headers for the
    caches Django cannot see (a CDN, a proxy, the browser).
    """
    django_request = getattr(request, "_request", request)
    setattr(django_request, ISSUED, True)
    setattr(django_request, "_cache_update_cache", False)  # noqa: B010 (Django's own name)


def issued(request: HttpRequest) -> bool:
    """Whether a token was issued while answering ``request``."""
    return getattr(getattr(request, "_request", request), ISSUED, False) is True


def verify_token(token: str, request: HttpRequest) -> str:
    """``token`` if this site issued it to ``request``'s scope and it has not
    expired; ``TokenInvalid`` (400) otherwise."""
    return verified_token(token, request)[0]


def verified_token(token: str, request: HttpRequest) -> tuple[str, timedelta]:
    """``verify_token``, with how long the token stays valid: a record claimed
    with it must live at least that long, or the token would run the view
    again once the record expired."""
    if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        raise TokenInvalid()
    try:
        payload = signing.loads(token, salt=_SALT)
    except signing.BadSignature as error:  # forged or altered
        raise TokenInvalid() from error
    if not isinstance(payload, dict) or not isinstance(payload.get("e"), int):
        raise TokenInvalid()
    if payload["e"] < time.time():
        raise TokenInvalid(
            "The form's idempotency token has expired; reload the form and submit it again."
        )
    if payload.get("s") != _scope_tag(default_scope(request)):
        raise TokenInvalid()  # issued to someone else
    return token, timedelta(seconds=max(0.0, payload["e"] - time.time()))


def form_token(request: HttpRequest) -> str | None:
    """The ``idempotency_token`` field of a form-encoded or multipart body."""
    django_request: HttpRequest = getattr(request, "_request", request)
    content_type = django_request.content_type or ""
    if content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return None
    if django_request.method == "POST":
        value = django_request.POST.get(FIELD)
    else:
        # Not DRF's request.data: a parse error there would leave the view
        # an empty body instead of DRF's own 400.
        value = _put_form(django_request, content_type).get(FIELD)
    return value if isinstance(value, str) else None


def _put_form(request: HttpRequest, content_type: str) -> Any:
    """The fields of a PUT or PATCH form body, which Django parses for POST
    only. The body is read within DATA_UPLOAD_MAX_MEMORY_SIZE and kept, so the
    view can still read it."""
    body = request.body
    if content_type == "multipart/form-data":
        fields, _files = request.parse_file_upload(request.META, BytesIO(body))
        return fields
    return QueryDict(body, encoding=request.encoding)


def refused_caller(request: HttpRequest) -> bool:
    """Whether a token issued to ``request``'s caller could never be submitted."""
    return _issued_scope(request) == REFUSED_SCOPE


def _issued_scope(request: HttpRequest) -> str:
    """The scope a new token is bound to. A page must render for a visitor
    with no principal whatever ANONYMOUS says: under ``"session"`` the visitor
    gets a session (as the CSRF middleware gives a cookie); under ``"refuse"``
    the token is bound to a scope no submit can have, and the submit is
    answered 400 anonymous-refused."""
    try:
        return default_scope(request)
    except AnonymousRefused:
        session = getattr(request, "session", None)
        if idempotency_settings.ANONYMOUS == "session" and session is not None:
            new_visitor(session)
            session.save()  # a session key for this visitor, sent as its cookie
            return default_scope(request)
        return REFUSED_SCOPE


def _scope_tag(scope: str) -> str:
    # The token names its scope without spelling it out.
    return hashlib.sha256(f"{_SALT}\x00{scope}".encode()).hexdigest()[:24]
