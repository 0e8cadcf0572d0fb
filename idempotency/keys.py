"""Reading the idempotency key from the request header."""

from __future__ import annotations

from idempotency.problems import KeyInvalid

PRINTABLE_ASCII = frozenset(chr(code) for code in range(0x20, 0x7F))


def parse_key(raw: str, max_length: int) -> str:
    """Return the key a header value carries, or raise ``KeyInvalid``.

    A structured-field string (RFC 8941 section 3.3.3, ``"abc"``) is the same
    key as the bare token ``abc``, as the IETF idempotency-key draft defines the
    header as an sf-string while most clients send it unquoted.
    """
    value = raw.strip(" \t")
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = _unquote(value[1:-1])
    if not value:
        raise KeyInvalid("The idempotency key is empty; send a unique value such as a UUID.")
    if len(value) > max_length:
        raise KeyInvalid(
            f"The idempotency key is {len(value)} characters long; "
            f"at most {max_length} are accepted."
        )
    if not PRINTABLE_ASCII.issuperset(value):
        raise KeyInvalid("The idempotency key may contain only printable ASCII characters.")
    return value


def _unquote(quoted: str) -> str:
    # RFC 8941 3.3.3: inside an sf-string only \" and \\ are escapes.
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
            raise KeyInvalid("The quoted idempotency key has an unescaped quote.")
        else:
            characters.append(character)
    if escaped:
        raise KeyInvalid("The quoted idempotency key ends with a lone backslash.")
    return "".join(characters)
