"""Rules for the Redis store's settings (contract section 6). Nothing here connects."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from idempotency.validation.invalid import Invalid, quote

# The schemes redis-py's from_url() reads.
REDIS_SCHEMES = ("redis", "rediss", "unix")
_USERINFO = re.compile(r"(//)[^/@]*@")


def redis_url(name: str, value: object) -> Invalid | None:
    """``None``, or a Redis URL: ``redis://`` or ``rediss://`` with a host, or ``unix://``.

    Parsed with urllib only. The message never shows the URL's credentials:
    check output ends up in CI logs.
    """
    if value is None:
        return None
    if isinstance(value, str) and _is_redis_url(value):
        return None
    shown = _USERINFO.sub(r"\1***@", value, count=1) if isinstance(value, str) else value
    return Invalid(
        ValueError,
        f"{name} is {quote(shown)}: give a URL such as "
        '"redis://localhost:6379/0", "rediss://:password@host:6380/0" or '
        '"unix:///run/redis.sock".',
    )


def _is_redis_url(value: str) -> bool:
    try:
        url = urlsplit(value)
        url.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    if url.scheme == "unix":
        return bool(url.path)
    return url.scheme in REDIS_SCHEMES and bool(url.hostname)


def redis_prefix(name: str, value: object) -> Invalid | None:
    """The start of every Redis key the package writes: printable, no white space."""
    if isinstance(value, str) and value.isprintable() and value and not _has_space(value):
        return None
    return Invalid(
        ValueError,
        f"{name} is {quote(value)}: give a non-empty str without white space or control "
        'characters, such as "idempotency:".',
    )


def _has_space(text: str) -> bool:
    return any(character.isspace() for character in text)
