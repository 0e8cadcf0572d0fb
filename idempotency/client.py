"""A retrying HTTP client for idempotent APIs, built on httpx (contract section 12).

``IdempotentClient`` is an ``httpx.Client`` and ``AsyncIdempotentClient`` an
``httpx.AsyncClient``: every unsafe request gets one ``Idempotency-Key`` per
call, reused on every attempt, and is retried by one ``RetryPolicy`` that both
share. Needs the ``client`` extra (``pip install django-idempotency[client]``);
nothing else in the package imports httpx, and this module needs no Django
settings. docs/clients.md explains the rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, cast

import httpx

__all__ = [
    "AsyncIdempotentClient",
    "IdempotentClient",
    "IdempotentResponse",
    "RetryPolicy",
    "new_key",
    "retry_after",
]

logger = logging.getLogger("idempotency")

DEFAULT_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"  # idempotency.responses.REPLAYED_HEADER
# Contract section 12. 409: the first request with the key is still running;
# 429: throttled; 502/503/504: a proxy, the record store or the server is
# briefly down. Any other status is the answer: 400 and 422 will be wrong again,
# and a 500 is the application's, not the network's.
RETRY_STATUSES = frozenset({409, 429, 502, 503, 504})
# RFC 9110 section 9.2.1. They carry no key; being idempotent by HTTP
# semantics, they are retried by the same rules.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# A connection refused, reset or dropped, or a timeout: the request may or may
# not have reached the view, and the same key makes either case safe to resend.
# Not retried: a bad URL, an unsupported scheme, a local protocol misuse.
RETRY_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def new_key() -> str:
    """The default key: a random UUID4, 122 bits no one can guess."""
    return str(uuid.uuid4())


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _http_date(value: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def retry_after(response: httpx.Response, now: datetime) -> float | None:
    """Seconds the response's ``Retry-After`` asks to wait (RFC 9110 section
    10.2.3: delay-seconds or an HTTP-date), or ``None`` without a valid one.

    A date is measured from the response's own ``Date`` when it has one, so
    that a client whose clock is off still waits as long as the server meant;
    ``now`` is used otherwise. A date in the past is 0.
    """
    value = response.headers.get("Retry-After", "").strip()
    if value.isascii() and value.isdigit():
        return float(value)
    when = _http_date(value) if value else None
    if when is None:
        return None
    reference = _http_date(response.headers.get("Date", "")) or now
    return max(0.0, (when - reference).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """When to retry and how long to wait; the clients only send and sleep.

    ``backoff`` is the most the first retry waits; each later retry may wait
    twice as long, never more than ``max_delay``, and waits a random fraction
    of that ("full jitter"), so that clients that failed together do not
    retry together. A ``Retry-After`` is waited at least, capped at
    ``max_delay``. ``deadline`` (seconds from the start of a call) stops
    retrying once a wait would end after it. ``clock``, ``random`` and ``now``
    are injectable so that tests assert the delays instead of sleeping.
    """

    retries: int = 3
    backoff: float = 0.5
    max_delay: float = 30.0
    deadline: float | None = None
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    random: Callable[[], float] = field(default=random.random, repr=False)
    now: Callable[[], datetime] = field(default=_utc_now, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"RetryPolicy(retries={self.retries!r}): give a whole number >= 0.")
        for name in ("backoff", "max_delay", "deadline"):
            value = getattr(self, name)
            if name == "deadline" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"RetryPolicy({name}={value!r}): give seconds >= 0.")
            if not math.isfinite(value):
                raise ValueError(f"RetryPolicy({name}={value!r}): give a finite number.")

    def retries_on(self, outcome: httpx.Response | Exception) -> bool:
        """Whether this attempt's outcome is worth another attempt."""
        if isinstance(outcome, httpx.Response):
            return outcome.status_code in RETRY_STATUSES
        return isinstance(outcome, RETRY_ERRORS)

    def delay(self, retry: int, response: httpx.Response | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first)."""
        # The exponent is bounded so that a long run of retries cannot overflow.
        ceiling = min(self.max_delay, self.backoff * 2.0 ** min(retry - 1, 64))
        wait = self.random() * ceiling
        asked = retry_after(response, self.now()) if response is not None else None
        if asked is not None:
            wait = max(wait, asked)
        return min(wait, self.max_delay)

    def next_delay(
        self, retry: int, outcome: httpx.Response | Exception, started: float
    ) -> float | None:
        """The wait before retry number ``retry``, or ``None`` when the outcome
        is final: not retryable, retries used up, or past the deadline.
        ``started`` is ``clock()`` at the start of the call."""
        if retry > self.retries or not self.retries_on(outcome):
            return None
        wait = self.delay(retry, outcome if isinstance(outcome, httpx.Response) else None)
        if self.deadline is not None and self.clock() + wait > started + self.deadline:
            return None
        return wait


class IdempotentResponse(httpx.Response):
    """An ``httpx.Response`` that says whether it is a replay."""

    @property
    def idempotent_replayed(self) -> bool:
        """True when the response carried ``Idempotent-Replayed: true``: the
        server answered with the stored response of an earlier attempt."""
        value: str = self.headers.get(REPLAYED_HEADER, "")
        return value.strip().lower() == "true"


def _idempotent(response: httpx.Response) -> IdempotentResponse:
    # httpx's transports build the Response and take no factory. The subclass
    # adds a property and no state, so the instance can simply take its class.
    response.__class__ = IdempotentResponse
    return cast(IdempotentResponse, response)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or {"http": 80, "https": 443}.get(url.scheme)


def _same_origin(url: httpx.URL, other: httpx.URL) -> bool:
    return _origin(url) == _origin(other)


def _https_upgrade(url: httpx.URL, location: httpx.URL) -> bool:
    """http://host to https://host on the default ports, which httpx trusts."""
    return (
        url.host == location.host
        and _origin(url)[::2] == ("http", 80)
        and _origin(location)[::2] == ("https", 443)
    )


class _Idempotent:
    """What both clients share: options, the key, the body check, the log."""

    policy: RetryPolicy
    idempotency_header: str
    _key_factory: Callable[[], str]

    def _configure(
        self,
        retries: int | None,
        policy: RetryPolicy | None,
        header: str,
        key_factory: Callable[[], str],
        default_headers: httpx.Headers,
    ) -> None:
        if retries is not None and policy is not None:
            raise TypeError(
                f"Pass retries={retries!r} inside the policy, RetryPolicy(retries={retries!r}, ...), "
                "rather than both retries= and policy=."
            )
        self.policy = policy or RetryPolicy(retries=3 if retries is None else retries)
        self.idempotency_header = header
        self._key_factory = key_factory
        self._refuse_default_key(default_headers)

    def _refuse_default_key(self, default_headers: httpx.Headers) -> None:
        header = self.idempotency_header
        if header in default_headers:
            raise TypeError(
                f"The client's headers= hold {header!r}: every call would send that one key. "
                "Leave it out; each call gets its own, or pass idempotency_key= to the call."
            )

    def _build(
        self, method: str, url: httpx.URL | str, key: str | None, kwargs: dict[str, Any]
    ) -> tuple[httpx.Request, dict[str, Any]]:
        """``request()``'s arguments as a request and the arguments of ``send()``."""
        if key is not None:
            if method.upper() in SAFE_METHODS:
                raise TypeError(
                    f"{method.upper()} is safe and needs no {self.idempotency_header}: "
                    "drop idempotency_key=, or use POST, PUT, PATCH or DELETE."
                )
            kwargs["headers"] = httpx.Headers(kwargs.get("headers"))
            kwargs["headers"][self.idempotency_header] = key
        send: dict[str, Any] = {
            name: kwargs.pop(name) for name in ("auth", "follow_redirects") if name in kwargs
        }
        request = cast("httpx.Client | httpx.AsyncClient", self).build_request(
            method, url, **kwargs
        )
        if kwargs.get("files"):
            # httpx renders a multipart body anew on every send, re-reading each
            # file: a file that cannot seek back would be sent empty on a retry.
            # Read once, the same bytes go out on every attempt, with their
            # length (many servers, Django's runserver among them, read no
            # chunked request body).
            body = request.read()
            request.headers.pop("Transfer-Encoding", None)
            request.headers["Content-Length"] = str(len(body))
        return request, send

    def _prepare(self, request: httpx.Request) -> None:
        """Give an unsafe request its key, once per call, and make sure its
        body can be sent again."""
        # httpx lets the client's headers change after construction: a key put
        # there would go out on every call, as refused at construction.
        self._refuse_default_key(cast("httpx.Client | httpx.AsyncClient", self).headers)
        if request.method not in SAFE_METHODS and self.idempotency_header not in request.headers:
            request.headers[self.idempotency_header] = self._key_factory()
        if self.policy.retries and not isinstance(request.stream, httpx.ByteStream):
            # An iterator or a file passed as content= is read as it is sent: a
            # retry would send what is left of it, a body the server never saw.
            raise TypeError(
                f"{request.method} {request.url} has a streamed body, which cannot be sent "
                "again on a retry: pass bytes (content=data.read()), call request.read() "
                "before send(), or use a client with retries=0."
            )

    def _redirect_headers(
        self, request: httpx.Request, url: httpx.URL, method: str
    ) -> httpx.Headers:
        """httpx's headers for a redirect, without the key where httpx drops
        ``Authorization``: to another origin, an upgrade of the same host to
        https excepted. In the anonymous scope the key is the only secret."""
        # httpx.Client._redirect_headers, next in the MRO of both clients.
        headers: httpx.Headers = super()._redirect_headers(request, url, method)  # type: ignore[misc]
        if not _same_origin(request.url, url) and not _https_upgrade(request.url, url):
            headers.pop(self.idempotency_header, None)
        return headers

    def _next_delay(
        self,
        request: httpx.Request,
        retry: int,
        outcome: httpx.Response | Exception,
        started: float,
    ) -> float | None:
        wait = self.policy.next_delay(retry, outcome, started)
        if wait is not None:
            # The start of the key (8 characters of a UUID, at most half of any
            # key) tells calls apart in a log without handing a reader the key,
            # which in the anonymous scope is the only secret.
            key = request.headers.get(self.idempotency_header) or ""
            failed = (
                f"HTTP {outcome.status_code}"
                if isinstance(outcome, httpx.Response)
                else type(outcome).__name__
            )
            logger.info(
                "Retry %d of %d of %s %s%s (key %s) in %.2f s after %s",
                retry, self.policy.retries, request.method, request.url.host, request.url.path,
                f"{key[: min(8, len(key) // 2)]}..." if key else "none", wait, failed,
            )  # fmt: skip
        return wait


class IdempotentClient(_Idempotent, httpx.Client):
    """An ``httpx.Client`` that retries safely (docs/clients.md).

    ``post``, ``put``, ``patch``, ``delete`` and ``request`` take
    ``idempotency_key=`` (default: a new UUID4 per call); every response is an
    ``IdempotentResponse``. ``sleep`` is how the client waits (``time.sleep``).
    Other arguments are httpx's.
    """

    def __init__(
        self,
        *,
        retries: int | None = None,
        policy: RetryPolicy | None = None,
        header: str = DEFAULT_HEADER,
        key_factory: Callable[[], str] = new_key,
        sleep: Callable[[float], object] = time.sleep,
        **kwargs: Any,
    ) -> None:
        self._configure(retries, policy, header, key_factory, httpx.Headers(kwargs.get("headers")))
        self._sleep = sleep
        super().__init__(**kwargs)

    def send(self, request: httpx.Request, **kwargs: Any) -> IdempotentResponse:
        self._prepare(request)
        started, retry = self.policy.clock(), 0
        while True:
            retry += 1
            try:
                response = super().send(request, **kwargs)
            except httpx.TransportError as error:
                if (wait := self._next_delay(request, retry, error, started)) is None:
                    raise
            else:
                if (wait := self._next_delay(request, retry, response, started)) is None:
                    return _idempotent(response)
                response.close()
            self._sleep(wait)

    def request(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        idempotency_key: str | None = None,
        **kwargs: Any,
    ) -> IdempotentResponse:
        request, send = self._build(method, url, idempotency_key, kwargs)
        return self.send(request, **send)

    @contextlib.contextmanager
    def stream(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        idempotency_key: str | None = None,
        **kwargs: Any,
    ) -> Iterator[IdempotentResponse]:
        """httpx's ``stream()``, with the request built as ``request()`` builds
        it: ``idempotency_key=`` taken, files in ``files=`` read once."""
        request, send = self._build(method, url, idempotency_key, kwargs)
        response = self.send(request, **send, stream=True)
        try:
            yield response
        finally:
            response.close()

    def post(self, url: httpx.URL | str, **kwargs: Any) -> IdempotentResponse:
        return self.request("POST", url, **kwargs)

    def put(self, url: httpx.URL | str, **kwargs: Any) -> IdempotentResponse:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: httpx.URL | str, **kwargs: Any) -> IdempotentResponse:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: httpx.URL | str, **kwargs: Any) -> IdempotentResponse:
        return self.request("DELETE", url, **kwargs)


class AsyncIdempotentClient(_Idempotent, httpx.AsyncClient):
    """``IdempotentClient`` for asyncio: the same policy, awaited.
    ``sleep`` is a coroutine function (``asyncio.sleep``)."""

    def __init__(
        self,
        *,
        retries: int | None = None,
        policy: RetryPolicy | None = None,
        header: str = DEFAULT_HEADER,
        key_factory: Callable[[], str] = new_key,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        **kwargs: Any,
    ) -> None:
        self._configure(retries, policy, header, key_factory, httpx.Headers(kwargs.get("headers")))
        self._sleep = sleep
        super().__init__(**kwargs)

    async def send(self, request: httpx.Request, **kwargs: Any) -> IdempotentResponse:
        self._prepare(request)
        started, retry = self.policy.clock(), 0
        while True:
            retry += 1
            try:
                response = await super().send(request, **kwargs)
            except httpx.TransportError as error:
                if (wait := self._next_delay(request, retry, error, started)) is None:
                    raise
            else:
                if (wait := self._next_delay(request, retry, response, started)) is None:
                    return _idempotent(response)
                await response.aclose()
            await self._sleep(wait)

    async def request(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        idempotency_key: str | None = None,
        **kwargs: Any,
    ) -> IdempotentResponse:
        request, send = self._build(method, url, idempotency_key, kwargs)
        return await self.send(request, **send)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        idempotency_key: str | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[IdempotentResponse]:
        """httpx's ``stream()``, with the request built as ``request()`` builds
        it: ``idempotency_key=`` taken, files in ``files=`` read once."""
        request, send = self._build(method, url, idempotency_key, kwargs)
        response = await self.send(request, **send, stream=True)
        try:
            yield response
        finally:
            await response.aclose()

    async def post(self, url: httpx.URL | str, **kwargs: Any) -> IdempotentResponse:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: httpx.URL | str, **kwargs: Any) -> IdempotentResponse:
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: httpx.URL | str, **kwargs: Any) -> IdempotentResponse:
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url: httpx.URL | str, **kwargs: Any) -> IdempotentResponse:
        return await self.request("DELETE", url, **kwargs)
