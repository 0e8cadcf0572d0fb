"""The request fingerprint: what makes a retry "the same request".

A SHA-256 over the method, the path with its query string and the body.
Bodies are reduced to their meaning first, so that a client that re-serialises
the same request on retry still matches: JSON is canonicalised and multipart
is hashed by fields and file contents rather than by its random boundary.
"""

from __future__ import annotations

import hashlib
import json
from io import BytesIO
from typing import Any

from django.core.exceptions import (
    ImproperlyConfigured,
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import HttpRequest, QueryDict
from django.http.multipartparser import MultiPartParserError
from django.http.request import RawPostDataException
from django.utils.datastructures import MultiValueDict

from idempotency.conf import RequestFunction
from idempotency.problems import BodyMalformed, RequestTooLarge

FINGERPRINT_LENGTH = 64


def request_fingerprint(request: HttpRequest) -> str:
    """The default ``FINGERPRINT``: a hex SHA-256 of the request's meaning."""
    # DRF's Request wraps the HttpRequest; its content_type keeps parameters.
    django_request: HttpRequest = getattr(request, "_request", request)
    digest = hashlib.sha256()
    content_type = django_request.content_type or ""
    for part in (django_request.method or "", django_request.get_full_path(), content_type):
        _update(digest, part.encode())
    body = _raw_body(django_request)
    if body is None:
        # DRF consumed the stream before us (a permission read request.data).
        _update(digest, _canonical_json(_parsed_data(request)))
    elif content_type == "multipart/form-data":
        _hash_multipart(digest, django_request, body)
    else:
        _update(digest, _canonical_body(body, content_type))
    return digest.hexdigest()


def compute_fingerprint(request: HttpRequest, function: RequestFunction) -> str:
    """Run the configured ``FINGERPRINT`` and fit its result to the column."""
    try:
        value = function(request)
    except (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent) as error:
        # Django's own limits (DATA_UPLOAD_MAX_*): answered as problem+json
        # rather than Django's text/html 400.
        raise RequestTooLarge(str(error)) from error
    except MultiPartParserError as error:
        raise BodyMalformed(f"The multipart request body cannot be parsed: {error}") from error
    if not isinstance(value, str) or not value:
        raise TypeError(
            f"IDEMPOTENCY['FINGERPRINT'] returned {value!r}; it must return a non-empty str."
        )
    if len(value) > FINGERPRINT_LENGTH:
        value = hashlib.sha256(value.encode()).hexdigest()
    return value


def _update(digest: Any, part: bytes) -> None:
    # Length-prefixed, so that moving bytes between parts changes the hash.
    digest.update(len(part).to_bytes(8, "big"))
    digest.update(part)


def _canonical_body(body: bytes, content_type: str) -> bytes:
    if _is_json(content_type) and body:
        try:
            return _canonical_json(json.loads(body))
        except (ValueError, RecursionError):
            return body  # not JSON after all: hash what was sent
    return body


def _raw_body(request: HttpRequest) -> bytes | None:
    if request.method == "POST" and request.content_type == "multipart/form-data":
        return b""  # hashed from the parsed form: reading .body would buffer every file
    try:
        return request.body
    except RawPostDataException:
        return None


def _parsed_data(request: HttpRequest) -> Any:
    if not hasattr(request, "_request"):
        # Hashing "no body" would let two different requests match and one
        # get the other's response: refuse rather than guess.
        raise ImproperlyConfigured(
            "The request body was read as a stream before @idempotent ran, so it cannot "
            "be fingerprinted; read request.body (which Django caches) instead of "
            "request.read() in middleware that runs before the view."
        )
    data = getattr(request, "data", None)
    if isinstance(data, QueryDict):
        return sorted(data.lists())
    return data


def _canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


def _hash_multipart(digest: Any, request: HttpRequest, body: bytes) -> None:
    fields: QueryDict
    if request.method == "POST":
        fields, files = request.POST, request.FILES
    else:
        # Django parses multipart bodies only for POST; parse the rest here.
        fields, files = request.parse_file_upload(request.META, BytesIO(body))
    for name, values in sorted(fields.lists()):
        for value in values:
            _update(digest, name.encode())
            _update(digest, value.encode())
    _hash_files(digest, files)


def _hash_files(digest: Any, files: MultiValueDict[str, Any]) -> None:
    for name, uploads in sorted(files.lists()):
        for upload in uploads:
            _update(digest, name.encode())
            _update(digest, (upload.name or "").encode())
            content = hashlib.sha256()
            for chunk in upload.chunks():
                content.update(chunk)
            upload.seek(0)  # the view reads the file after us
            _update(digest, content.digest())
