"""Rules for the Redis store's settings (contract section 6), and the URL as
messages may show it. Nothing here connects."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from idempotency.validation.invalid import Invalid, quote

# The schemes redis-py's from_url() reads.
REDIS_SCHEMES = ("redis", "rediss", "unix")
# From "//" to the LAST "@": a password may hold "/", "@" or ":" itself
# (unencoded, redis-py would misread it, but the message must still hide it).
_USERINFO = re.compile(r"(//).*@", re.DOTALL)
# redis-py passes unknown query options on to the connection: ?password=...
_QUERY_SECRET = re.compile(r"([?&](?:password|username)=)[^&#]*", re.IGNORECASE)


def redis_url(name: str, value: object) -> Invalid | None:
    """``None``, or a Redis URL: ``redis://`` or ``rediss://`` with a host, or ``unix://``.

    Parsed with urllib only. The message never shows the URL's credentials:
    check output ends up in CI logs.
    """
    if value is None:
        return None
    if isinstance(value, str) and _is_redis_url(value):
        return None
    shown = shown_url(value) if isinstance(value, str) else value
    return Invalid(
        ValueError,
        f"{name} is {quote(shown)}: give a URL such as "
        '"redis://localhost:6379/0", "rediss://:password@host:6380/0" or '
        '"unix:///run/redis.sock".',
    )


def shown_url(url: str) -> str:
    """``url`` as a message may quote it: its user and password, in the
    authority or the query string, replaced by ``***``."""
    return _QUERY_SECRET.sub(r"\1***", _USERINFO.sub(r"\1***@", url, count=1))


def client_options_refused(url: str, cluster: bool) -> str | None:
    """Why redis-py would refuse to make a client of ``url`` (a query option
    it does not know, a value it cannot read), or ``None``.

    Builds the pool and one connection object as the store would, without
    connecting: what fails here would fail on every request. Needs redis-py.
    """
    from redis.connection import ConnectionPool
    from redis.exceptions import RedisError

    try:
        options = client_options(url)
        if cluster and options.get("db", 0) != 0:
            return "a Redis Cluster has only database 0"
        if cluster and "path" in options:
            return "a Redis Cluster is not reached through a unix:// socket"
        pool = ConnectionPool(**options)
        pool.connection_class(**pool.connection_kwargs)
    except TypeError as error:
        unknown = re.search(r"unexpected keyword argument '([^']*)'", str(error))
        return f"redis-py has no option {unknown.group(1)!r}" if unknown else str(error)
    except (ValueError, RedisError) as error:
        return str(error)
    return None


def client_options(url: str) -> dict[str, Any]:
    """redis-py's reading of ``url``: host, port, credentials and the query
    string's options (ValueError for a value it cannot read). Needs redis-py."""
    from redis.connection import parse_url

    options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
    return options


def without_query_options(url: str, names: frozenset[str]) -> str:
    """``url`` without the query options in ``names``: redis-py's
    ``from_url()`` lets the query string override its keyword arguments, so
    an option the caller must decide is taken out of the URL first."""
    parts = urlsplit(url)
    options = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(name, value) for name, value in options if name not in names]
    if len(kept) == len(options):
        return url
    return urlunsplit(parts._replace(query=urlencode(kept)))


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
