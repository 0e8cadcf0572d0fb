"""The HTTP door, shared by ``@idempotent`` and ``IdempotencyMixin``.

From a request it builds the attempt (key, principal and scope, fingerprint);
from the engine's outcome it builds the response: the view's own, a replay,
or a problem. It decides nothing the engine decides.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.exceptions import (
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.db import connections, transaction
from django.http import HttpRequest
from django.http.multipartparser import MultiPartParserError
from django.http.request import HttpHeaders
from django.http.response import HttpResponseBase
from django.template.response import SimpleTemplateResponse
from django.utils.cache import add_never_cache_headers, patch_vary_headers

from idempotency import crypto, engine, tokens, turns
from idempotency.conf import as_callable, as_timedelta, idempotency_settings
from idempotency.fingerprint import FingerprintError, compute_fingerprint
from idempotency.keys import digests, parse_key, shown
from idempotency.options import ViewOptions
from idempotency.problems import (
    BodyMalformed,
    KeyMissing,
    Misconfigured,
    NotAcceptable,
    Problem,
    RequestTooLarge,
    ResponseNotReplayable,
    StaleObject,
    TokenInvalid,
    render_problem,
)
from idempotency.responses import capture, content_type, is_released, replay
from idempotency.scope import UnknownPrincipal, default_scope, scope_problem
from idempotency.stores import Attempt, StoredResponse, get_store
from idempotency.stores.transactions import enclosed

logger = logging.getLogger("idempotency")

CallView = Callable[[], HttpResponseBase]
Render = Callable[[Problem], HttpResponseBase]
JSON_TYPES = ("application/json", "application/problem+json")
# How long a form's second submit waits for the first (docs/forms.md).
FORM_WAIT = timedelta(seconds=10)


@dataclass(frozen=True)
class HttpDoor:
    request: HttpRequest
    key: str  # the key as sent: it opens sealed responses, and is never stored
    scope: str
    sensitive: bool
    with_data: bool  # DRF: give replays a ``data`` attribute, as DRF responses have

    def keep(self, response: HttpResponseBase) -> StoredResponse | None:
        if not isinstance(response, HttpResponseBase):
            # Not a response (a view that forgot to return one): the key is
            # released and the value goes back as it is, so Django (or DRF)
            # raises its own error naming the view's mistake.
            return None
        if is_released(response.status_code, idempotency_settings.RELEASE_STATUSES):
            return None
        stored = capture(
            response,
            idempotency_settings.REPLAY_HEADERS,
            idempotency_settings.MAX_STORED_RESPONSE_BYTES,
        )
        if self.sensitive:
            # Headers too may carry the secret (a Location with a token): a
            # response that cannot be kept keeps none of them in clear.
            if stored.body is None:
                return StoredResponse(stored.status, {}, None)
            return crypto.seal(stored, self.key, self.scope)
        return stored

    def replay(self, stored: StoredResponse) -> HttpResponseBase:
        if stored.sensitive:
            try:
                stored = crypto.open_sealed(stored, self.key, self.scope)
            except crypto.SealError as error:
                # SECRET_KEY rotated past SECRET_KEY_FALLBACKS: the outcome is
                # gone for good, as for a response that was never stored.
                raise ResponseNotReplayable() from error
        media_type = content_type(stored).partition(";")[0].strip()
        if media_type and not accepts(self.request, media_type):
            raise NotAcceptable()
        response = replay(stored)
        if self.with_data and media_type in JSON_TYPES and not _header(stored, "content-encoding"):
            # As DRF responses have; a body JSON cannot read (compressed, or
            # labelled JSON by mistake) replays as the bytes it is, without.
            with contextlib.suppress(ValueError, RecursionError):
                response.data = json.loads(stored.body or b"null")  # type: ignore[attr-defined]
        return response

    def signal_arguments(self) -> dict[str, Any]:
        return {"request": self.request}


def accepts(request: HttpRequest, media_type: str) -> bool:
    """Whether the request's ``Accept`` takes ``media_type`` (without parameters).

    As DRF's content negotiation matches a renderer's type: by type and
    subtype, with wildcards, whatever parameters the range carries
    (``application/json; version=1.0`` takes ``application/json``), and not a
    range of quality 0. Django's ``request.accepts`` refuses a type without
    parameters for a range with them, so the very request that got the
    response would be refused its replay.
    """
    accept = header(request, "Accept")
    if accept is None or not accept.strip():
        return True
    main, _, sub = media_type.lower().partition("/")
    for accepted in accept.split(","):
        name, *parameters = accepted.split(";")
        range_main, _, range_sub = name.strip().lower().partition("/")
        if not range_main or not range_sub:
            continue
        if _quality(parameters) == 0:
            continue
        if range_main in ("*", main) and range_sub in ("*", sub):
            return True
    return False


def _quality(parameters: list[str]) -> float:
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value.strip())
            except ValueError:
                return 1.0
    return 1.0


def _header(stored: StoredResponse, name: str) -> str:
    return next((v for k, v in stored.headers.items() if k.lower() == name), "")


def protect(
    request: HttpRequest,
    call_view: CallView,
    options: ViewOptions,
    *,
    render: Render = render_problem,
    with_data: bool = False,
) -> HttpResponseBase:
    """Answer ``request``, running ``call_view`` at most once per scope and key.

    ``render`` turns a problem into the answer (the DRF door lets DRF's
    exception handling do it); ``with_data`` gives replays a ``data``
    attribute, as DRF responses have.
    """
    call_view = _uncacheable_view(request, call_view)
    if _protected(request):
        return call_view()  # an outer layer protects this request already
    try:
        prepared = _prepare(request, options, with_data)
        if prepared is None:
            return call_view()
        attempt, door = prepared
        with _protecting(request):
            steps = engine.protect(get_store(), attempt, door, _wait(options))
            return engine.drive(steps, call_view)
    except Problem as problem:
        return render(problem)
    except Exception as error:
        if _is_stale(error):
            _roll_back_enclosing()
            return render(StaleObject())
        raise


async def aprotect(
    request: HttpRequest,
    call_view: Callable[[], Awaitable[HttpResponseBase]],
    options: ViewOptions,
) -> HttpResponseBase:
    """``protect`` for async views: the same steps, the store work in a thread."""

    async def call() -> HttpResponseBase:
        response: HttpResponseBase = uncacheable(request, await call_view())
        return response

    if _protected(request):
        return await call()  # an outer layer protects this request already
    try:
        with turns.request():
            # Reading the key, the user and the body may query the database:
            # not inside another request's transaction either.
            prepared, cancelled = await turns.unit(_prepare, request, options, False)
            if cancelled is not None:
                raise cancelled
            if prepared is None:
                return await call()
            attempt, door = prepared
            with _protecting(request):
                steps = engine.protect(get_store(), attempt, door, _wait(options))
                return await engine.adrive(steps, call)
    except Problem as problem:
        return render_problem(problem)
    except Exception as error:
        if _is_stale(error):
            return render_problem(StaleObject())
        raise


def _uncacheable_view(request: HttpRequest, call_view: CallView) -> CallView:
    return lambda: uncacheable(request, call_view())


def uncacheable(request: HttpRequest, response: Any) -> Any:
    """``response``, kept out of caches if answering ``request`` issued a
    token (a safe method's page passes through too): never-cache headers,
    and ``Vary: Cookie``, as a token is its caller's. A response rendered
    later (a ``TemplateResponse``, which the tag may issue its token in) gets
    them once rendered, before ``cache_page``'s own callback reads them."""
    if isinstance(response, SimpleTemplateResponse) and not response.is_rendered:
        response.add_post_render_callback(lambda rendered: _never_cache(request, rendered))
    elif isinstance(response, HttpResponseBase):
        _never_cache(request, response)
    return response


def _never_cache(request: HttpRequest, response: HttpResponseBase) -> None:
    if tokens.issued(request):
        add_never_cache_headers(response)
        patch_vary_headers(response, ("Cookie",))


# Marks the HttpRequest (which DRF's Request wraps) while a layer protects it:
# a second protection of the same request (@idempotent on dispatch and on the
# handler; a viewset's partial_update calling a decorated update) passes
# straight through to the view, under the outer layer's claim and options.
PROTECTED = "_idempotency_protected"


def _protected(request: HttpRequest) -> bool:
    return getattr(getattr(request, "_request", request), PROTECTED, False) is True


@contextlib.contextmanager
def _protecting(request: HttpRequest) -> Iterator[None]:
    django_request = getattr(request, "_request", request)
    setattr(django_request, PROTECTED, True)
    try:
        yield
    finally:
        with contextlib.suppress(AttributeError):
            delattr(django_request, PROTECTED)


def _prepare(
    request: HttpRequest, options: ViewOptions, with_data: bool
) -> tuple[Attempt, HttpDoor] | None:
    """The attempt and the door for a request, or ``None`` to let it pass untouched."""
    if (request.method or "").upper() not in options.methods:
        return None
    raw = header(request, idempotency_settings.HEADER)
    if raw is None and (options.token or not _streams_upload(request)):
        raw = _form_token(request, options.token)
    if options.token:
        # Only a token this site issued to this scope: checked before the store.
        if raw is None:
            raise TokenInvalid("This form needs its idempotency token; reload it and submit again.")
        key, token_life = tokens.verified_token(raw.strip(" \t"), request)
    elif raw is None:
        if _required(options):
            raise KeyMissing(
                f"This endpoint requires an {idempotency_settings.HEADER} header; send a new "
                "unique value (a UUID) for each operation."
            )
        return None
    else:
        key = parse_key(raw, idempotency_settings.KEY_MAX_LENGTH)
    ttl = as_timedelta(options.ttl) if options.ttl is not None else idempotency_settings.TTL
    if options.token:
        ttl = max(ttl, token_life)  # the record outlives the token that can claim it
    key_digests = digests(key)
    key_shown = shown(key_digests[0])  # for log lines before the scope is known
    principal = _principal(request, key_shown)
    scope = _scope(request, options, principal, key_shown)
    fingerprint = with_principal(_fingerprint(request, scope, key_shown), principal, scope)
    attempt = Attempt(
        scope=scope,
        key=key_digests[0],
        fingerprint=fingerprint,
        method=request.method or "",
        # Without the query string, which may carry a secret.
        path=stored_path(request.path),
        ttl=ttl,
        lock_for=idempotency_settings.LOCK_TIMEOUT,
        atomic=options.atomic,
        previous_keys=key_digests[1:],
    )
    return attempt, HttpDoor(request, key, scope, options.sensitive, with_data)


def stored_path(path: str) -> str:
    """``path`` as a record keeps it: each unprintable character (NUL, which
    PostgreSQL refuses in a text column; a newline, a tab) as its Python
    escape, ``\\x00``, ``\\n``, once here for every store."""
    if path.isprintable():
        return path
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in path
    )


_WSGI_NAMES: dict[str, str] = {}


def header(request: HttpRequest, name: str) -> str | None:
    """The value of the header ``name``, as ``request.headers.get(name)`` has it.

    Read from ``request.META`` under the header's WSGI name, where Django's
    servers and test client put it: ``request.headers`` would build a mapping
    of every header of the request to find one. DRF's ``Request`` reads the
    ``HttpRequest`` it wraps. A name with an underscore, which no WSGI name
    turns back into, takes ``request.headers``.
    """
    if "_" in name:
        return request.headers.get(name)
    wsgi_name = _WSGI_NAMES.get(name)
    if wsgi_name is None:
        wsgi_name = _WSGI_NAMES[name] = HttpHeaders.to_wsgi_name(name)
    value: str | None = getattr(request, "_request", request).META.get(wsgi_name)
    return value


def with_principal(fingerprint: str, principal: str, scope: str) -> str:
    """The fingerprint a record keeps: in a scope wider than its principal (a
    tenant), the principal is part of it, so another member presenting the
    key gets 422, never the replay (contract section 3, "Scope")."""
    if scope == principal:
        return fingerprint
    return hashlib.sha256(f"{principal}\x00{fingerprint}".encode()).hexdigest()


def _form_token(request: HttpRequest, required: bool) -> str | None:
    """The form's token field. A body that cannot be parsed has none: without
    a key the request passes untouched (the view meets the same error as
    without the package); a token view answers it as a problem."""
    try:
        return tokens.form_token(request)
    except (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent) as error:
        if required:
            raise RequestTooLarge() from error
    except MultiPartParserError as error:
        if required:
            raise BodyMalformed() from error
    return None


def _streams_upload(request: HttpRequest) -> bool:
    """A multipart POST, which Django parses by streaming it through the
    view's upload handlers: reading its field before the view would process
    the upload, so a view without tokens meets it untouched (contract section
    3, first row: without a key the view runs as if the package were absent)."""
    django_request: HttpRequest = getattr(request, "_request", request)
    return django_request.method == "POST" and django_request.content_type == "multipart/form-data"


def _required(options: ViewOptions) -> bool:
    return idempotency_settings.REQUIRED if options.required is None else options.required


def _wait(options: ViewOptions) -> timedelta:
    if options.wait is not None:
        return as_timedelta(options.wait)
    if options.token:
        # A browser shows only the last response of a double submit: the
        # second submit waits for the first and replays its answer.
        return max(idempotency_settings.IN_PROGRESS_WAIT, FORM_WAIT)
    return idempotency_settings.IN_PROGRESS_WAIT


def _principal(request: HttpRequest, key_shown: str) -> str:
    try:
        return default_scope(request)
    except UnknownPrincipal as error:
        logger.error(
            "Idempotency cannot name the caller (%s): set IDEMPOTENCY['SCOPE'] to a "
            "function that names it; the request was refused scope=? key=%s",
            error,
            key_shown,
        )
        raise Misconfigured() from error


def _scope(request: HttpRequest, options: ViewOptions, principal: str, key_shown: str) -> str:
    try:
        function = as_callable(options.scope or idempotency_settings.SCOPE)
    except ImportError as error:
        logger.error("Idempotency SCOPE %r does not import; the request was refused "
                     "scope=? key=%s", options.scope or idempotency_settings.SCOPE, key_shown,
                     exc_info=True)  # fmt: skip
        raise Misconfigured() from error
    if function is default_scope:
        return principal
    try:
        scope = function(request)
    except Problem:
        raise
    except Exception as error:
        logger.error("Idempotency SCOPE function %r raised; the request was refused "
                     "scope=? key=%s", function, key_shown, exc_info=True)  # fmt: skip
        raise Misconfigured() from error
    problem = scope_problem(scope)
    if problem is not None:
        logger.error("Idempotency SCOPE function %r %s; the request was refused "
                     "scope=? key=%s", function, problem, key_shown)  # fmt: skip
        raise Misconfigured()
    return scope


def _fingerprint(request: HttpRequest, scope: str, key_shown: str) -> str:
    # Problems, a disallowed host (Django answers 400) and DRF's refusal of
    # the body (DRF answers it) pass through as they are.
    try:
        return compute_fingerprint(request, idempotency_settings.FINGERPRINT)
    except FingerprintError as error:
        logger.error("Idempotency FINGERPRINT failed; the request was refused: %s scope=%s "
                     "key=%s", error, scope, key_shown, exc_info=error.__cause__)  # fmt: skip
        raise Misconfigured() from error


def _is_stale(error: Exception) -> bool:
    """A ``StaleObjectError`` from a versioned model: 409, the key released."""
    try:
        from idempotency.versioning import StaleObjectError  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return False
    return isinstance(error, StaleObjectError)


def _roll_back_enclosing() -> None:
    """Mark every transaction the view ran in for rollback, before its stale
    error becomes a 409 response.

    Django rolls a request's transaction (ATOMIC_REQUESTS, or a block around
    the view) back when the view raises; answered as a response, the error
    would let it commit what the view wrote before its stale save, which
    also cleared the mark it set (VersionedModel.save_base). The client is
    told to re-read and retry, so none of it may commit. A test case's own
    transaction is not the request's and is left alone.
    """
    for connection in connections.all(initialized_only=True):
        if enclosed(connection):
            transaction.set_rollback(True, using=connection.alias)
