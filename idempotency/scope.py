"""Scopes: whose keys are whose, so no caller ever sees another's response."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

from idempotency.conf import RequestFunction, as_callable
from idempotency.fields import SCOPE_LENGTH

ANONYMOUS_SCOPE = "anonymous"


def user_scope(request: HttpRequest) -> str:
    """The default ``SCOPE``: ``user:<pk>``, or ``anonymous``.

    On a DRF request ``request.user`` is the user DRF authenticated (token,
    session, ...), because the adapters run after DRF's authentication.
    """
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return ANONYMOUS_SCOPE


def resolve_scope(request: HttpRequest, function: str | RequestFunction) -> str:
    scope = as_callable(function)(request)
    if not isinstance(scope, str) or not scope or len(scope) > SCOPE_LENGTH:
        raise ImproperlyConfigured(
            f"The idempotency scope function returned {scope!r}; it must return a "
            f"non-empty str of at most {SCOPE_LENGTH} characters."
        )
    return scope
