"""Turning a view's response into a stored one, and a stored one back."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from django.http import BadHeaderError, HttpResponse
from django.http.response import HttpResponseBase
from django.template.response import SimpleTemplateResponse

from idempotency.stores import StoredResponse

REPLAYED_HEADER = "Idempotent-Replayed"

# Contract section 3, "Replayed headers": the headers that say how to read the
# body travel with it. Lower case: header names compare case-insensitively.
REPLAYABLE_HEADERS = frozenset(
    {
        "content-type",
        "content-encoding",
        "location",
        "content-language",
        "content-disposition",
        "etag",
        "last-modified",
        "link",
    }
)
# Credentials are never written to the store, whatever REPLAY_HEADERS says:
# a replay must not hand one client's credentials or session to another.
NEVER_STORED_HEADERS = frozenset(
    {
        "set-cookie",
        "cookie",
        "authorization",
        "proxy-authorization",
        "www-authenticate",
        "proxy-authenticate",
        "authentication-info",
        "proxy-authentication-info",
        "x-api-key",
        "x-csrftoken",
    }
)


def is_released(status: int, release_statuses: Collection[int]) -> bool:
    """A 5xx or a RELEASE_STATUSES answer is not kept: a retry runs again."""
    return status >= 500 or status in release_statuses


def capture(
    response: HttpResponseBase, extra_headers: Iterable[str], max_bytes: int
) -> StoredResponse:
    """What to store for a response; ``body`` is None when it cannot be kept."""
    headers = _replayable_headers(response, extra_headers)
    if response.streaming:
        return StoredResponse(response.status_code, headers, None)
    if isinstance(response, SimpleTemplateResponse) and not response.is_rendered:
        response.render()
    content: bytes = response.content  # type: ignore[attr-defined]
    if len(content) > max_bytes:
        return StoredResponse(response.status_code, headers, None)
    return StoredResponse(response.status_code, headers, content)


def replay(stored: StoredResponse) -> HttpResponse:
    response = HttpResponse(stored.body or b"", status=stored.status)
    if "content-type" not in {name.lower() for name in stored.headers}:
        del response["Content-Type"]  # do not invent one the original did not have
    for name, value in stored.headers.items():
        response[name] = value
    response[REPLAYED_HEADER] = "true"
    return response


def content_type(stored: StoredResponse) -> str:
    return next((v for k, v in stored.headers.items() if k.lower() == "content-type"), "")


def _replayable_headers(response: HttpResponseBase, extra: Iterable[str]) -> dict[str, str]:
    allowed = REPLAYABLE_HEADERS | {name.lower() for name in extra} if extra else REPLAYABLE_HEADERS
    return {
        name: value
        for name, value in response.items()
        if name.lower() in allowed
        and name.lower() not in NEVER_STORED_HEADERS
        and _settable(name, value)
    }


def _settable(name: str, value: str) -> bool:
    """Whether the replay can set this value again.

    Django MIME-encodes a value that is not latin-1, and for some characters
    (U+2028) the encoding folds onto a second line, which it then refuses to
    set: stored, such a header would make every replay a 500 for the TTL.
    """
    if _plain(name) and _plain(value):
        return True  # what Django sets as it is: ASCII on one line
    try:
        HttpResponse()[name] = value
    except BadHeaderError:
        return False
    return True


def _plain(text: object) -> bool:
    return isinstance(text, str) and text.isascii() and "\n" not in text and "\r" not in text
