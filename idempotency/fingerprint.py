"""The request fingerprint: what makes a retry "the same request".

A SHA-256 over the method, the host, the path with its query string, the
content type and the body (CONTRACT section 3, "Fingerprint"). Bodies are
reduced to their meaning first, so that a client that re-serialises the same
request on retry still matches: JSON is canonicalised with every number kept as
written, and multipart is hashed by fields and file contents rather than by its
random boundary. Every part is length-prefixed and every body tagged with the
way it was read, so two different requests never feed the hash the same bytes.
"""

from __future__ import annotations

import hashlib
from io import BytesIO
from typing import TYPE_CHECKING, Any

from django.core.exceptions import (
    ImproperlyConfigured,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest, UnreadablePostError
from django.http.multipartparser import MultiPartParser, MultiPartParserError
from django.http.request import RawPostDataException, split_domain_port
from django.utils.datastructures import MultiValueDict

from idempotency.canonical import HashedUpload, canonical_json, file_digest, first, tagged
from idempotency.conf import RequestFunction
from idempotency.problems import BodyMalformed, Problem, RequestTooLarge

if TYPE_CHECKING:
    from hashlib import _Hash

FINGERPRINT_LENGTH = 64
# JSON bodies up to this size are canonicalised; larger ones are hashed as
# sent, so a re-serialised retry of one no longer matches. Parsing builds a
# Python object per value (about 25 times the body in memory) on every retry;
# above this size that costs more than tolerating re-serialisation is worth
# (issue "Security", item 6). benchmarks/fingerprint.py measures both sides.
CANONICAL_JSON_LIMIT = 256 * 1024

_STREAM_READ = (
    "The request body was read as a stream before @idempotent ran, so it cannot "
    "be fingerprinted; read request.body (which Django caches) instead of "
    "request.read() in middleware that runs before the view."
)


class FingerprintError(ImproperlyConfigured):
    """The request cannot be fingerprinted because of the site's code or settings.

    Raised by ``compute_fingerprint`` when the ``FINGERPRINT`` function raises or
    returns anything but a non-empty ``str``, and by ``request_fingerprint``
    when the body is gone (read as a stream before the view) or was parsed into
    values it cannot compare exactly. The original exception is its
    ``__cause__``; the message never quotes the request.
    """


def request_fingerprint(request: HttpRequest) -> str:
    """The default ``FINGERPRINT``: a hex SHA-256 of the request's meaning."""
    # DRF's Request wraps the HttpRequest; its content_type keeps parameters.
    django_request: HttpRequest = getattr(request, "_request", request)
    content_type = django_request.content_type or ""
    # The host: tenants told apart by subdomain must not replay across hosts.
    # Its domain, as ALLOWED_HOSTS matches it (lower case, without the port):
    # app servers that listen on different ports serve one site.
    # The path and query string as sent: ?a=1&b=2 and ?b=2&a=1 are two requests.
    head = [
        django_request.method or "",
        _domain(django_request.get_host()),
        django_request.get_full_path(),
        content_type,
    ]
    if content_type == "multipart/form-data":
        digest = hashlib.sha256(_sized_parts(head, "form"))
        _hash_multipart(digest, request, django_request)
        return digest.hexdigest()
    body = _raw_body(django_request)
    if body is None:
        # DRF consumed the stream before us (a permission read request.data):
        # hash what it parsed, which is what the view will see.
        digest = hashlib.sha256(_sized_parts(head, "parsed"))
        _update(digest, _tagged(_drf_request(request).data))
        return digest.hexdigest()
    canonical = None
    if body and len(body) <= CANONICAL_JSON_LIMIT and _is_json(content_type):
        canonical = canonical_json(body)
    if canonical is None:
        tag, hashed = "raw", body  # other media types, invalid, deep or large JSON
    else:
        tag, hashed = "json", canonical
    # The same bytes as one _update per part; the body is not copied.
    digest = hashlib.sha256(_sized_parts(head, tag) + len(hashed).to_bytes(8, "big"))
    digest.update(hashed)
    return digest.hexdigest()


# Host -> its domain (split_domain_port is a regular expression per call).
# Bounded: a site that allows any host would otherwise keep every one sent.
_DOMAINS: dict[str, str] = {}
_DOMAINS_MAX = 1024


def _domain(host: str) -> str:
    domain = _DOMAINS.get(host)
    if domain is None:
        domain, _port = split_domain_port(host)
        if len(_DOMAINS) < _DOMAINS_MAX:
            _DOMAINS[host] = domain
    return domain


def _sized_parts(texts: list[str], tag: str) -> bytes:
    """The texts then the ASCII tag, each length-prefixed as ``_update`` writes them."""
    parts = [text.encode("utf-8", "surrogatepass") for text in texts]
    parts.append(tag.encode())
    return b"".join([len(part).to_bytes(8, "big") + part for part in parts])


def compute_fingerprint(request: HttpRequest, function: RequestFunction) -> str:
    """Run the configured ``FINGERPRINT`` and fit its result to the column.

    Raises ``RequestTooLarge`` (Django's DATA_UPLOAD_MAX_* limits),
    ``BodyMalformed`` (a multipart body that cannot be parsed) and
    ``FingerprintError`` (the function failed or returned no ``str``); lets
    ``Problem``, ``SuspiciousOperation`` (``DisallowedHost``: Django answers
    400), ``UnreadablePostError`` (the client went away) and DRF's
    ``APIException`` (DRF answers it) through.
    """
    try:
        value = function(request)
    except (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent) as error:
        # Django's own limits: problem+json rather than Django's text/html
        # 400. Their messages are Django's, never the request's.
        raise RequestTooLarge(str(error)) from error
    except MultiPartParserError as error:
        # The parser's message quotes the request (its boundary, its headers):
        # the answer keeps to the class's own detail.
        raise BodyMalformed() from error
    except (Problem, FingerprintError, SuspiciousOperation, UnreadablePostError):
        raise
    except Exception as error:
        from rest_framework.exceptions import APIException

        if isinstance(error, APIException):
            raise  # DRF's ParseError from request.data: DRF answers it (400)
        # The class of the exception only: its text may quote the body.
        raise FingerprintError(
            f"IDEMPOTENCY['FINGERPRINT'] ({_name(function)}) raised {type(error).__name__}; "
            "fix the function, which must return a non-empty str for every request."
        ) from error
    if not isinstance(value, str) or not value:
        raise FingerprintError(
            f"IDEMPOTENCY['FINGERPRINT'] ({_name(function)}) returned "
            f"{'an empty str' if value == '' else 'a ' + type(value).__name__}; "
            "it must return a non-empty str, such as a hex digest."
        )
    if len(value) > FINGERPRINT_LENGTH:
        value = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return value


def _name(function: RequestFunction) -> str:
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', '?')}"


def _update(digest: _Hash, part: bytes) -> None:
    # Length-prefixed, so that moving bytes between parts changes the hash.
    digest.update(len(part).to_bytes(8, "big"))
    digest.update(part)


def _raw_body(request: HttpRequest) -> bytes | None:
    try:
        return request.body
    except RawPostDataException:
        return None


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


def _drf_request(request: HttpRequest) -> Any:
    """DRF's Request, if DRF parsed the body that is gone."""
    from rest_framework.request import Empty, Request

    if not isinstance(request, Request) or getattr(request, "_full_data", Empty) is Empty:
        # Hashing "no body" would let two different requests match and one
        # get the other's response: refuse rather than guess.
        raise FingerprintError(_STREAM_READ)
    return request


def _tagged(data: Any) -> bytes:
    try:
        return tagged(data)
    except TypeError as error:
        raise FingerprintError(str(error)) from error


def _hash_multipart(digest: _Hash, request: HttpRequest, django_request: HttpRequest) -> None:
    """Fields and files, in one order, whether Django, DRF or we parsed them."""
    fields: MultiValueDict[str, Any]
    files: MultiValueDict[str, Any]
    if django_request.method == "POST" and (
        hasattr(django_request, "_files")  # parsed already, by Django or DRF
        or hasattr(django_request, "_body")
        or not getattr(django_request, "_read_started", False)
    ):
        # Django parses POST multipart itself, streaming files to its upload
        # handlers; the view gets the same objects after us.
        fields, files = django_request.POST, django_request.FILES
    elif (body := _raw_body(django_request)) is not None:
        # Django parses multipart only for POST: parse the rest here, with
        # Django's parser, hashing each file as it arrives rather than storing
        # it; DRF parses the cached body again for the view.
        parser = MultiPartParser(
            django_request.META, BytesIO(body), [_HashingUploadHandler()], django_request.encoding
        )
        fields, files = parser.parse()
    else:
        # DRF parsed it first, with Django's parser: the same fields and files.
        drf_request = _drf_request(request)
        fields, files = drf_request.POST, drf_request.FILES
    _hash_form(digest, fields, files)


def _hash_form(
    digest: _Hash, fields: MultiValueDict[str, Any], files: MultiValueDict[str, Any]
) -> None:
    # Sorted by name, so clients that order fields differently match; the
    # values of one name keep their order, which getlist() shows the view.
    for group, encode in ((fields, _field), (files, file_digest)):
        lists = sorted(group.lists(), key=first)
        _update(digest, len(lists).to_bytes(8, "big"))
        for name, values in lists:
            _update(digest, name.encode("utf-8", "surrogatepass"))
            _update(digest, len(values).to_bytes(8, "big"))
            for value in values:
                _update(digest, encode(value))


def _field(value: Any) -> bytes:
    return str(value).encode("utf-8", "surrogatepass")


class _HashingUploadHandler(FileUploadHandler):
    """Hashes each file as the parser delivers it and keeps only the digest.

    The project's own upload handlers serve the view; whatever they do with a
    file, two requests whose files are equal byte for byte are equal to them.
    """

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.content = hashlib.sha256()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self.content.update(raw_data)

    def file_complete(self, file_size: int) -> HashedUpload:
        # An UploadedFile, so that its name is cleaned as the view's is.
        return HashedUpload(
            name=self.file_name, content_type=self.content_type, size=file_size,
            sha256=self.content.digest(),
        )  # fmt: skip
