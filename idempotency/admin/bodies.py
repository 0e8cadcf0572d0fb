"""A stored response as the detail page shows it: always as escaped text.

A stored body is whatever a view answered, so it is rendered as text and never
as HTML; JSON is pretty-printed, text decoded by its charset, anything else
sized. Characters that change how text reads without being visible (line and
paragraph separators, bidi overrides, control characters) are shown as
escapes, so a stored value cannot disguise itself or the page around it.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.http import parse_header_parameters
from django.utils.safestring import SafeString
from django.utils.translation import gettext

JSON_TYPES = ("application/json", "application/problem+json")
TEXT_TYPES = (
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
)
# Unicode categories shown as escapes: controls (Cc), format characters such
# as U+202E RIGHT-TO-LEFT OVERRIDE (Cf), line and paragraph separators (Zl,
# Zp), surrogates, private use and unassigned code points.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
# Kept as they are inside a body, which is shown in a <pre>.
BODY_WHITESPACE = frozenset("\n\t")


def visible(text: str, keep: frozenset[str] = frozenset()) -> str:
    """``text`` with every invisible character written as ``\\uXXXX`` (or ``\\xXX``).

    ``keep`` names characters left as they are (a body keeps its new lines).
    """
    if "\n" in keep and "\n" in text:
        # Line by line, so that one odd character in a large body costs its
        # line, not a Python loop over the whole body.
        return "\n".join(visible(line, keep) for line in text.split("\n"))
    plain = text
    for character in keep:
        plain = plain.replace(character, "")
    if plain.isprintable():  # the common case, decided in C
        return text
    return "".join(
        character
        if character in keep or unicodedata.category(character) not in INVISIBLE_CATEGORIES
        else _escape(character)
        for character in text
    )


def _escape(character: str) -> str:
    code = ord(character)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def content_type_of(headers: object) -> str:
    """The stored ``Content-Type``, or ``""``; stored headers are not trusted to be a dict."""
    if not isinstance(headers, Mapping):
        return ""
    return next(
        (str(value) for name, value in headers.items() if str(name).lower() == "content-type"),
        "",
    )


def render_headers(headers: object) -> SafeString | str:
    """The stored headers as a two-column table, names sorted."""
    if not isinstance(headers, Mapping) or not headers:
        return gettext("No headers stored.")
    rows = sorted((visible(str(name)), visible(str(value))) for name, value in headers.items())
    return format_html(
        '<table class="idempotency-headers">{}</table>',
        format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows),
    )


def render_body(body: bytes, headers: object) -> SafeString:
    """A stored body as escaped text: JSON pretty-printed, text decoded, binary sized."""
    content_type = content_type_of(headers)
    media_type, params = parse_header_parameters(content_type) if content_type else ("", {})
    if not body:
        return format_html("<p>{}</p>", gettext("An empty body."))
    is_json = media_type in JSON_TYPES or media_type.endswith("+json")
    is_text = (
        is_json
        or media_type.startswith("text/")
        or media_type in TEXT_TYPES
        or media_type.endswith("+xml")
    )
    text = _decode(body, params.get("charset", "utf-8")) if is_text else None
    if text is None:
        return format_html(
            "<p>{}</p>",
            gettext("{size} bytes of binary content ({content_type}), not shown.").format(
                size=len(body), content_type=visible(content_type) or gettext("no Content-Type")
            ),
        )
    if is_json:
        text = _pretty(text)
    return format_html('<pre class="idempotency-body">{}</pre>', visible(text, BODY_WHITESPACE))


def summarise_body(body: bytes, headers: object) -> SafeString:
    """What a user without the body permission sees: the size and the content type."""
    content_type = content_type_of(headers)
    return format_html(
        "<p>{}</p>",
        gettext(
            "{size} bytes ({content_type}). Reading stored bodies needs the permission "
            "“Can view stored response bodies”."
        ).format(size=len(body), content_type=visible(content_type) or gettext("no Content-Type")),
    )


def render_encrypted(body: bytes | None) -> SafeString:
    """A sensitive record: its headers and body are ciphertext, never decoded here."""
    size = 0 if body is None else len(body)
    return format_html(
        '<p class="idempotency-encrypted">{}</p>',
        gettext(
            "Encrypted ({size} bytes): the headers and body of this response are encrypted "
            "under its idempotency key, which is not stored; only a retry presenting the key "
            "can read them."
        ).format(size=size),
    )


def _pretty(text: str) -> str:
    """JSON indented, or the text as it is when it is not JSON or too deep to indent.

    Both the decoder and the indenting encoder recurse once per nesting level,
    so a deeply nested body (``[[[[...]]]]``) raises ``RecursionError``.
    """
    try:
        value: Any = json.loads(text)
        return json.dumps(value, indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return text


def _decode(body: bytes, charset: str) -> str | None:
    try:
        return body.decode(charset)
    except LookupError:  # an unknown charset name
        return _decode(body, "utf-8") if charset.lower() != "utf-8" else None
    except UnicodeDecodeError:
        return None
