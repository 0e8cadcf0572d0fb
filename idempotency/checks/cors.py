"""django-cors-headers: browsers on other origins can send the key and read the replay flag."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage
from django.utils.module_loading import import_string

from idempotency.checks.messages import guarded, message, setting
from idempotency.checks.rules import valid
from idempotency.responses import REPLAYED_HEADER
from idempotency.validation import is_collection, quote


def _lists(name: str, header: str, default: object) -> bool:
    """Whether a corsheaders list setting covers ``header``; unreadable counts as yes.

    corsheaders' own checks report malformed values; a ``*`` is a wildcard only
    without credentials (Fetch standard, CORS protocol).
    """
    names: Any = getattr(settings, name, default)
    if not is_collection(names) or not all(isinstance(item, str) for item in names):
        return True
    lowered = {item.lower() for item in names}
    wildcard = "*" in lowered and not getattr(settings, "CORS_ALLOW_CREDENTIALS", False)
    return header.lower() in lowered or wildcard


@guarded("CORS_ALLOW_HEADERS")
def check_cors_allow_headers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not apps.is_installed("corsheaders") or not valid("HEADER"):
        return []
    header: str = setting("HEADER")
    default = import_string("corsheaders.defaults.default_headers")
    if _lists("CORS_ALLOW_HEADERS", header, default):
        return []
    current = getattr(settings, "CORS_ALLOW_HEADERS", default)
    return [
        message(
            "idempotency.W003",
            f"CORS_ALLOW_HEADERS is {quote(current)}, without {header!r}: add it, such as "
            f"CORS_ALLOW_HEADERS = (*default_headers, {header.lower()!r}).",
            hint="Browsers send a cross-origin request with a custom header only after a "
            "preflight allows it, so browser clients could not send idempotency keys "
            "(default_headers is in corsheaders.defaults).",
        )
    ]


@guarded("CORS_EXPOSE_HEADERS")
def check_cors_expose_headers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not apps.is_installed("corsheaders") or _lists("CORS_EXPOSE_HEADERS", REPLAYED_HEADER, ()):
        return []
    current = getattr(settings, "CORS_EXPOSE_HEADERS", ())
    return [
        message(
            "idempotency.W004",
            f"CORS_EXPOSE_HEADERS is {quote(current)}, without {REPLAYED_HEADER!r}: add it, "
            f"such as CORS_EXPOSE_HEADERS = ({REPLAYED_HEADER.lower()!r},).",
            hint="Browsers hide response headers from cross-origin scripts unless they are "
            "exposed, so browser clients could not tell a replay from a first execution.",
        )
    ]


CHECKS = (check_cors_allow_headers, check_cors_expose_headers)
