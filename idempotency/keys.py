"""The idempotency key: read from the request, then kept only as a keyed digest.

A key is a bearer secret (in the shared ``anonymous`` scope it is the only
one), so the record, the admin and the logs never hold it in full: the store
keeps ``digest(key)``, an HMAC under a key derived from ``SECRET_KEY``; the
logs and the admin show the first characters of that digest, which lets an
operator correlate a log line with a record and nothing more.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from idempotency.conf import setting
from idempotency.problems import KeyInvalid

PRINTABLE_ASCII = frozenset(chr(code) for code in range(0x20, 0x7F))
DIGEST_LENGTH = 64  # hex SHA-256
# What a log line or the admin shows of a digest: enough to tell records apart.
SHOWN_LENGTH = 12
_SALT = b"django-idempotency.key-digest"


def parse_key(raw: str, max_length: int) -> str:
    """Return the key a header value carries, or raise ``KeyInvalid``.

    A structured-field string (RFC 8941 section 3.3.3, ``"abc"``) is the same
    key as the bare token ``abc``, as the IETF idempotency-key draft defines the
    header as an sf-string while most clients send it unquoted. A comma outside
    a quoted string means a list (or a header sent twice, which servers join
    with ", "): one request has one key.
    """
    value = raw.strip(" \t")
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = _unquote(value[1:-1])
    elif "," in value:
        raise KeyInvalid(KeyInvalid.several)
    if not value:
        raise KeyInvalid(KeyInvalid.empty)
    if len(value) > max_length:
        raise KeyInvalid(
            f"The idempotency key is {len(value)} characters long; "
            f"at most {max_length} are accepted."
        )
    if not PRINTABLE_ASCII.issuperset(value):
        raise KeyInvalid(KeyInvalid.not_printable)
    return value


def _unquote(quoted: str) -> str:
    # RFC 8941 3.3.3: inside an sf-string only \" and \\ are escapes. An
    # unescaped quote ends the string, so '"a", "b"' (two keys) lands here too.
    characters = []
    escaped = False
    for character in quoted:
        if escaped:
            if character not in '"\\':
                raise KeyInvalid("The quoted idempotency key has an invalid escape.")
            characters.append(character)
            escaped = False
        elif character == "\\":
            escaped = True
        elif character == '"':
            raise KeyInvalid(
                "The quoted idempotency key has an unescaped quote; send one key, "
                'escaping quotes inside it as \\".'
            )
        else:
            characters.append(character)
    if escaped:
        raise KeyInvalid("The quoted idempotency key ends with a lone backslash.")
    return "".join(characters)


def digest(key: str) -> str:
    """What the store keeps of ``key``: a hex HMAC-SHA256 under the current secret."""
    return _digest(key, setting("SECRET_KEY"))


def digests(key: str) -> tuple[str, ...]:
    """The digest under the current secret, then under each of ``SECRET_KEY_FALLBACKS``.

    Records written before a key rotation are found under a fallback digest,
    so a retry after a rotation still replays instead of running again.
    """
    fallbacks = setting("SECRET_KEY_FALLBACKS", ())
    return (digest(key), *(_digest(key, secret) for secret in fallbacks))


def shown(key_digest: str) -> str:
    """The part of a digest that logs and the admin show."""
    return key_digest[:SHOWN_LENGTH]


def _digest(key: str, secret: str | bytes) -> str:
    # One call into OpenSSL: hmac.new() and copy() would build Python objects.
    mac_key = _mac_key(secret if isinstance(secret, bytes) else secret.encode())
    return hmac.digest(mac_key, key.encode(), "sha256").hex()


@lru_cache(maxsize=8)
def _mac_key(secret: bytes) -> bytes:
    # The HMAC key is derived from the secret rather than the secret itself, so
    # a digest never doubles as a signature Django would accept elsewhere.
    return hashlib.sha256(_SALT + secret).digest()
