"""Scopes and principals: whose keys are whose, so no caller ever sees another's response.

The principal is who made the request, as Django or DRF identified them; the
scope is the set of records a key is looked up in. By default they are the
same. A custom ``SCOPE`` (a tenant, say) widens the scope, and the record
still remembers its principal: the engine folds it into the fingerprint, so
another member of the scope presenting the key gets 422, never the replay.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.db import models
from django.http import HttpRequest

from idempotency.conf import idempotency_settings, setting
from idempotency.fields import SCOPE_LENGTH
from idempotency.problems import AnonymousRefused

if TYPE_CHECKING:
    from django.contrib.sessions.backends.base import SessionBase

ANONYMOUS_SCOPE = "anonymous"
# The scope of a principal whose name is too long or unprintable.
DIGESTED_PRINCIPAL = "principal"
_SALT = b"django-idempotency.principal"
# The session entry that holds an anonymous visitor's id (ANONYMOUS = "session").
VISITOR = "_idempotency_visitor"


class UnknownPrincipal(Exception):
    """The caller is authenticated by something the default scope cannot name."""


def default_scope(request: HttpRequest) -> str:
    """The default ``SCOPE``: the principal, else what ``ANONYMOUS`` says.

    - ``user:<pk>`` for the project's user model;
    - ``<app_label>.<model>:<pk>`` for any other principal model (a service
      account, a device) as ``request.user``; as DRF's ``request.auth`` (a
      credential, whose pk may be the secret itself) ``<app_label>.<model>:<digest>``;
    - ``credential:<digest>`` for a DRF credential that is a bare string (an
      API key, a token), never the credential itself;
    - ``principal:<digest>`` for any of those whose name would be longer
      than the scope column or hold unprintable characters;
    - for a caller with no principal: ``anonymous`` (``ANONYMOUS = "share"``),
      ``session:<visitor id>`` (``"session"``, see ``visitor_id``), or
      ``400 anonymous-refused``.
    """
    return principal(request) or anonymous_scope(request)


def principal(request: HttpRequest) -> str | None:
    """Who made the request, or ``None`` for a caller with no principal.

    On a DRF request ``request.user`` and ``request.auth`` are what DRF's
    authentication found, because the doors run after it.
    """
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False) is True:
        return _fitting(_name(user))
    credential = getattr(request, "auth", None)
    if credential is not None:
        return _fitting(_name(credential, secret=True))
    return None


def _fitting(name: str) -> str:
    """``name``, or ``principal:<digest of it>`` when it would not fit the
    scope column or holds characters a log line or PostgreSQL cannot take.

    No other form begins ``principal:``: the others begin ``user:``,
    ``credential:``, ``session:``, or a dotted label or class path.
    """
    if len(name) <= SCOPE_LENGTH and name.isprintable():
        return name
    return f"{DIGESTED_PRINCIPAL}:{_secret_digest(name)}"


def anonymous_scope(request: HttpRequest) -> str:
    policy = idempotency_settings.ANONYMOUS
    if policy == "session":
        visitor = visitor_id(request)
        if visitor is not None:
            return f"session:{visitor}"
    elif policy == "share":
        return ANONYMOUS_SCOPE
    raise AnonymousRefused()


def visitor_id(request: HttpRequest) -> str | None:
    """The id of the session's visitor, or ``None`` for a request with no session.

    Kept in the session, because the session key is not the visitor: with
    the signed_cookies engine the key is the cookie itself, a new one each
    time the session is written, and a retry holding the newer cookie would
    land in another scope. The first time, the id is the digest of the key
    the session has then, so a retry still holding that cookie derives the
    same id, and on a database session (whose key stays) it is the scope
    this package always gave the session.
    """
    session = getattr(request, "session", None)
    if session is None:
        return None
    stored = session.get(VISITOR)
    if isinstance(stored, str) and _is_visitor_id(stored):
        return stored
    session_key = session.session_key
    if not session_key:
        return None
    visitor = _secret_digest(session_key)
    session[VISITOR] = visitor  # saved with the session, by SessionMiddleware
    return visitor


def new_visitor(session: SessionBase) -> None:
    """Give a session that has no key yet a random visitor id, before it is
    first saved: a signed_cookies key is the session's data, signed, the same
    for two empty sessions written in the same second."""
    session[VISITOR] = secrets.token_hex(16)


def _is_visitor_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


def scope_problem(scope: object) -> str | None:
    """Why ``scope`` cannot be used as a scope, or ``None``."""
    if not isinstance(scope, str) or not scope:
        return f"returned {scope!r}; it must return a non-empty str"
    if len(scope) > SCOPE_LENGTH:
        return f"returned a scope of {len(scope)} characters; at most {SCOPE_LENGTH} fit the column"
    if not scope.isprintable():
        # Control characters would forge log fields, and PostgreSQL refuses NUL.
        return f"returned {scope!r}, which holds control characters"
    return None


def _name(who: object, secret: bool = False) -> str:
    """The principal's name. A ``secret`` one (DRF's ``request.auth``) may be
    keyed by the credential itself (DRF's own ``Token`` is): its pk is digested."""
    if isinstance(who, models.Model):
        if who.pk is None:
            raise UnknownPrincipal(f"the principal {type(who).__name__} has no primary key")
        # A proxy of the user model is a user.
        meta = (who._meta.concrete_model or type(who))._meta
        if meta.label_lower == setting("AUTH_USER_MODEL").lower():
            return f"user:{who.pk}"  # the user model itself: no registry lookup
        user_model = get_user_model()
        if meta.label_lower == (user_model._meta.concrete_model or user_model)._meta.label_lower:
            return f"user:{who.pk}"
        pk = _secret_digest(str(who.pk)) if secret else who.pk
        return f"{meta.label_lower}:{pk}"
    if isinstance(who, str | bytes):
        return f"credential:{_secret_digest(who)}"
    pk = getattr(who, "pk", None)
    if isinstance(pk, int | str) and not isinstance(pk, bool) and str(pk):
        # A principal that is not a model, such as simplejwt's TokenUser.
        kind = type(who)
        # The class path in lower case, as model labels are; the pk exactly.
        pk = _secret_digest(str(pk)) if secret else pk
        return f"{kind.__module__}.{kind.__qualname__}".lower() + f":{pk}"
    raise UnknownPrincipal(
        f"the principal is a {type(who).__module__}.{type(who).__qualname__}, which has no pk"
    )


def _secret_digest(value: str | bytes) -> str:
    """A stable name for a secret (a credential, a session key) that does not reveal it.

    Unkeyed, unlike key digests: a scope must not change when SECRET_KEY is
    rotated, and credentials and session keys are random enough that their
    hash cannot be reversed.
    """
    raw = value if isinstance(value, bytes) else value.encode()
    return hashlib.sha256(_SALT + raw).hexdigest()[:32]
