"""Rules for HTTP header names."""

from __future__ import annotations

import re

from idempotency.validation.invalid import Invalid, is_collection, quote

# RFC 9110 section 5.1: a field name is a token (section 5.6.2).
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Headers that carry a credential, lower case. Named as HEADER, the credential
# would become the key: digested, compared across retries and shown in part in
# logs, and every caller holding it would share its records.
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-csrftoken"}
)


def header(name: str, value: object) -> Invalid | None:
    """An HTTP field name."""
    if not isinstance(value, str):
        return Invalid(
            TypeError, f'{name} is {quote(value)}: give a header name such as "Idempotency-Key".'
        )
    if not TOKEN.fullmatch(value):
        return Invalid(
            ValueError,
            f"{name} is {quote(value)}, which is not a valid HTTP header name: use letters, "
            'digits and hyphens, such as "Idempotency-Key".',
        )
    return None


def key_header(name: str, value: object) -> Invalid | None:
    """A header that may carry the idempotency key: not a credential's."""
    # Django reads "_" as "-" (request.headers): X_Api_Key is X-Api-Key.
    if isinstance(value, str) and value.lower().replace("_", "-") in CREDENTIAL_HEADERS:
        return Invalid(
            ValueError,
            f"{name} is {quote(value)}, a credential header, so the credential would become "
            'the idempotency key: give a header of its own, such as "Idempotency-Key".',
        )
    return None


def portable_header(name: str, value: object) -> Invalid | None:
    """A header name that common servers pass through: no underscore."""
    if isinstance(value, str) and "_" in value:
        return Invalid(
            ValueError,
            f"{name} is {quote(value)}, which Django reads as {value.replace('_', '-')!r}, while "
            "servers drop a header sent with the underscore: write the hyphen, "
            f"{value.replace('_', '-')!r}.",
        )
    return None


def header_names(name: str, value: object) -> Invalid | None:
    """A collection of HTTP field names."""
    if is_collection(value) and all(
        isinstance(item, str) and TOKEN.fullmatch(item)
        for item in value  # type: ignore[attr-defined]
    ):
        return None
    return Invalid(
        TypeError,
        f'{name} is {quote(value)}: give a tuple of header names, such as ("X-Request-Cost",); '
        "a single name needs its trailing comma.",
    )


def not_listed(
    name: str, value: object, *, forbidden: frozenset[str], kind: str, why: str
) -> Invalid | None:
    """A collection of header names none of which is in ``forbidden`` (lower case).

    The message names every such header: "lists 'A', a <kind> that is <why>".
    """
    if not is_collection(value):
        return None
    listed = [item for item in value if isinstance(item, str) and item.lower() in forbidden]  # type: ignore[attr-defined]
    if not listed:
        return None
    names = ", ".join(map(quote, listed))
    if len(listed) == 1:
        return Invalid(ValueError, f"{name} lists {names}, a {kind} that is {why}: remove it.")
    return Invalid(ValueError, f"{name} lists {names}, {kind}s that are {why}: remove them.")
