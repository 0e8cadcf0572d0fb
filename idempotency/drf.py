"""The Django REST framework door: ``IdempotencyMixin``, and what ``@idempotent``
needs to protect a DRF view after DRF's authentication.

A DRF view identifies its caller in ``initial()`` (authentication,
permissions, throttles), after ``dispatch`` has started. So both doors wrap
the *handler* (``post``, ``create``, an ``@action``) on the view instance when
``dispatch`` begins: DRF then calls the wrapped handler after ``initial()``,
with ``request.user`` and ``request.auth`` set, and a request that DRF
refuses never reaches the package. The mixin also wraps it when ``initial()``
begins, if ``dispatch`` did not: a subclass whose ``dispatch`` calls
``APIView.dispatch`` directly, or a project mixin's, still reaches it there.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from django.http.request import RawPostDataException
from django.http.response import HttpResponseBase
from django.views import View
from rest_framework import views
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.response import Response

from idempotency import http
from idempotency.conf import RequestFunction, idempotency_settings
from idempotency.log import logger
from idempotency.options import OPTION_NAMES, OPTIONS_ATTRIBUTE, ViewOptions, options_of
from idempotency.problems import (
    AnonymousRefused,
    Misconfigured,
    Problem,
    RequestTooLarge,
    render_problem,
)
from idempotency.validation import UNSAFE_METHODS

if TYPE_CHECKING:
    from rest_framework.views import APIView

    _Base = APIView
else:
    _Base = object

OptionsFor = Callable[[], ViewOptions]
# ViewSet actions whose name is not an HTTP method.
VIEWSET_ACTIONS = ("create", "update", "partial_update", "destroy", "list", "retrieve")


class IdempotencyMixin(_Base):
    """Make every unsafe method of a DRF view or viewset idempotent.

    Put it before the view class in the bases. Attributes left ``None`` are read
    from ``settings.IDEMPOTENCY`` at request time; override the ``get_*``
    methods to decide per request (they run after authentication, with
    ``self.request`` and, on a viewset, ``self.action`` set).
    """

    idempotency_scope: str | RequestFunction | None = None
    idempotency_required: bool | None = None
    idempotency_ttl: timedelta | float | None = None
    idempotency_methods: tuple[str, ...] | None = None
    idempotency_token: bool = False
    idempotency_wait: timedelta | float | None = None
    idempotency_atomic: bool = True
    idempotency_sensitive: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_mixin_class(cls)

    def get_idempotency_methods(self) -> frozenset[str]:
        if self.idempotency_methods is None:
            return UNSAFE_METHODS
        return frozenset(method.upper() for method in self.idempotency_methods)

    def get_idempotency_scope(self) -> str | RequestFunction | None:
        return self.idempotency_scope

    def get_idempotency_required(self) -> bool | None:
        return self.idempotency_required

    def get_idempotency_ttl(self) -> timedelta | float | None:
        return self.idempotency_ttl

    def get_idempotency_wait(self) -> timedelta | float | None:
        return self.idempotency_wait

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        arm(self, request, self._idempotency_options)
        return super().dispatch(request, *args, **kwargs)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Every path into APIView.dispatch calls initial() before it looks up
        # the handler, whether or not it went through the dispatch above (a
        # subclass calling APIView.dispatch(self, ...) does not): arm here too.
        # Before DRF authenticates, so the body is read early as in dispatch.
        arm(self, request, self._idempotency_options)
        super().initial(request, *args, **kwargs)

    def _idempotency_options(self) -> ViewOptions:
        options = ViewOptions(
            scope=self.get_idempotency_scope(),
            required=self.get_idempotency_required(),
            ttl=self.get_idempotency_ttl(),
            token=self.idempotency_token,
            wait=self.get_idempotency_wait(),
            atomic=self.idempotency_atomic,
            sensitive=self.idempotency_sensitive,
            methods=self.get_idempotency_methods(),
        )
        # The get_idempotency_* hooks answer per request, so their answers are
        # checked here, by the rules the class attributes met at class
        # creation: a ttl of 0 or a GET would silently unprotect the view.
        checked: tuple[object, ...] | None = _checked_key(options)
        try:
            if checked in _CHECKED:
                return options  # the same answers, of the same types, passed before
        except TypeError:
            checked = None  # an unhashable answer is checked every time
        problems = options.problems(lambda field: _hook_label(type(self), field))
        if problems:
            logger.error("Idempotency options of %s are invalid; the request was refused: %s",
                         type(self).__qualname__, problems[0].message)  # fmt: skip
            raise Misconfigured()
        if checked is not None and len(_CHECKED) < CHECKED_MAX:
            _CHECKED.add(checked)
        return options


# Answers of the hooks that passed the checks, each value with its type (True
# and 1 are equal, and only one is a valid ``required``). Bounded, for hooks
# that answer with a new object each time (a lambda as scope).
CHECKED_MAX = 256
_CHECKED: set[tuple[object, ...]] = set()


def _checked_key(options: ViewOptions) -> tuple[object, ...]:
    values = tuple(getattr(options, name) for name in OPTION_NAMES)
    return (*map(type, values), *values)


def _hook_label(view: type, field: str) -> str:
    hooks = {"scope", "required", "ttl", "wait", "methods"}
    name = f"get_idempotency_{field}()" if field in hooks else f"idempotency_{field}"
    return f"{view.__qualname__}.{name}"


# Marks a handler already wrapped for this request. The first arm wins: a
# decorator on dispatch runs before the mixin's dispatch.
ARMED = "__idempotency_armed__"


def arm(view: Any, request: HttpRequest, options_for: OptionsFor) -> None:
    """Wrap the handler that will answer ``request`` on the ``view`` instance.

    Called at the start of ``dispatch`` (with Django's request) or of
    ``initial()`` (with DRF's, which wraps it), before DRF authenticates.
    """
    request = getattr(request, "_request", request)  # DRF's content_type keeps parameters
    name = (request.method or "").lower()
    handler = getattr(view, name, None)
    if name.upper() not in UNSAFE_METHODS:
        return  # GET, HEAD, OPTIONS pass through untouched, whatever the options say
    if handler is None or name not in view.http_method_names or options_of(handler):
        return  # DRF answers 405; or @idempotent already wraps the handler
    if getattr(handler, ARMED, False):
        return  # armed by the mixin and by @idempotent on dispatch, or in initial(): once
    if inspect.iscoroutinefunction(handler):
        raise TypeError(async_handler_refused(type(view).__name__, name))
    form = request.content_type == "application/x-www-form-urlencoded"  # may carry a token
    problem = None
    if name.upper() in UNSAFE_METHODS and (
        http.header(request, idempotency_settings.HEADER) is not None or form
    ):
        problem = read_body_early(request)

    def idempotent_handler(request: Request, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if problem is not None:
            # Answered after DRF's authentication, through its exception
            # handling, as every other problem of a DRF view.
            return _render(request, problem)
        try:
            options = options_for()
        except Problem as refused:
            return _render(request, refused)
        return protect(request, lambda: handler(request, *args, **kwargs), options)

    setattr(idempotent_handler, ARMED, True)
    setattr(view, name, idempotent_handler)


def protect(
    request: Request, call_view: Callable[[], Any], options: ViewOptions
) -> HttpResponseBase:
    """The HTTP door for a DRF request, with DRF's rendering and error handling."""
    return http.protect(
        request,
        lambda: finalize(request, call_view()),
        options,
        render=lambda problem: _render(request, problem),
        with_data=True,
    )


def read_body_early(request: HttpRequest) -> Problem | None:
    """Read the raw body before DRF's parsers consume the stream.

    The fingerprint then hashes the bytes as sent (numbers as written) rather
    than DRF's parsed data. Multipart bodies are left to the parsers, which
    stream files to disk; they are fingerprinted by fields and file contents.

    When the body was read as a stream already (the mixin arming from
    ``initial()``, after a project's code read ``request.data``), it is left
    as it is: the fingerprint then hashes what DRF parsed, or refuses the
    request if DRF did not parse it, never skips it.
    """
    if (request.content_type or "").startswith("multipart/"):
        return None
    try:
        request.body  # noqa: B018 - Django caches it for DRF's parsers
    except RequestDataTooBig as error:
        return RequestTooLarge(str(error))
    except RawPostDataException:
        return None  # gone already: request_fingerprint meets it at the handler
    return None


def finalize(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """Render a DRF ``Response`` inside the view's transaction, so it can be stored.

    DRF renders after the handler returns; its view's ``finalize_response``
    chooses the renderer, and calling it twice is harmless.
    """
    if isinstance(response, Response) and not response.is_rendered:
        view = request.parser_context.get("view")  # type: ignore[attr-defined]
        if view is not None:
            view.finalize_response(request, response)  # sets the renderer in place
        response.render()
    return response


TOKEN_REFUSED = (
    "This site issues idempotency tokens only to callers that are signed in (or have "
    "a session), and a token issued to you could never be used; sign in first."
)


class IdempotencyTokenView(views.APIView):
    """``GET``: a one-time token for the caller, for clients that send forms'
    keys themselves (``{"token": ..., "field": "idempotency_token", "header": ...}``).

    Route it where your API clients can reach it; it runs DRF's authentication
    first, so the token is bound to the authenticated caller's scope. Send
    the token back as the ``Idempotency-Key`` header or the form field. A
    caller no token can serve (anonymous, under ``ANONYMOUS = "refuse"``) is
    answered ``400 anonymous-refused``.
    """

    def get(self, request: Request) -> HttpResponseBase:
        from idempotency.tokens import FIELD, issue_token, refused_caller

        if refused_caller(request):
            # A page renders for such a visitor (the tag's token is refused
            # on submit); an API client is told at once.
            return _render(request, AnonymousRefused(TOKEN_REFUSED))
        token = issue_token(request)
        return Response(
            {"token": token, "field": FIELD, "header": idempotency_settings.HEADER},
            headers={"Cache-Control": "no-store"},
        )


class ProblemException(APIException):
    """A package problem, handed to a project's own ``EXCEPTION_HANDLER``.

    ``problem`` holds the problem; ``detail`` its sentence, ``wait`` its
    Retry-After (DRF's default handler sets the header from it).
    """

    def __init__(self, problem: Problem) -> None:
        super().__init__(detail=problem.detail, code=problem.slug)
        self.status_code = problem.status
        self.problem = problem
        self.wait = problem.retry_after


def _render(request: Request, problem: Problem) -> HttpResponseBase:
    view = getattr(request, "parser_context", {}).get("view")
    handler = view.get_exception_handler() if view is not None else views.exception_handler
    if handler is not views.exception_handler:
        # The project formats its errors itself (drf-standardized-errors, ...):
        # let DRF's exception handling reach its handler.
        raise ProblemException(problem)
    response = render_problem(problem)
    response.data = problem.as_dict()  # type: ignore[attr-defined]
    return response


def _check_mixin_class(cls: type) -> None:
    """Misconfiguration fails when the class is created, never degrades to unprotected."""
    mro = cls.__mro__
    if View in mro and mro.index(IdempotencyMixin) > mro.index(View):
        # The view class (APIView, a viewset, Django's View) comes first: its
        # dispatch and initial() never reach the mixin. A project mixin listed
        # before ours is accepted: if its dispatch does not call super(),
        # initial() still arms the handler.
        first = next(klass for klass in cls.__bases__ if issubclass(klass, View))
        raise TypeError(
            f"{cls.__name__} lists IdempotencyMixin after {first.__name__}, whose dispatch() "
            f"and initial() never reach the mixin: put the mixin first, class "
            f"{cls.__name__}(IdempotencyMixin, {first.__name__}, ...)."
        )
    options = ViewOptions(
        scope=cls.idempotency_scope,  # type: ignore[attr-defined]
        required=cls.idempotency_required,  # type: ignore[attr-defined]
        ttl=cls.idempotency_ttl,  # type: ignore[attr-defined]
        token=cls.idempotency_token,  # type: ignore[attr-defined]
        wait=cls.idempotency_wait,  # type: ignore[attr-defined]
        atomic=cls.idempotency_atomic,  # type: ignore[attr-defined]
        sensitive=cls.idempotency_sensitive,  # type: ignore[attr-defined]
        methods=(
            UNSAFE_METHODS if cls.idempotency_methods is None else cls.idempotency_methods  # type: ignore[attr-defined]
        ),
    )
    options.check(lambda name: f"{cls.__name__}.idempotency_{name}")
    check_support(options, cls.__name__)
    name = next(iter(async_handlers(cls)), None)
    if name is not None:
        raise TypeError(async_handler_refused(cls.__name__, name))


def async_handlers(cls: type) -> list[str]:
    """The names of the class's ``async def`` handlers (HTTP methods, viewset
    actions, ``@action`` methods), which the DRF door cannot protect."""
    return [
        name
        for name, handler in inspect.getmembers(cls, inspect.iscoroutinefunction)
        if name in getattr(cls, "http_method_names", ())
        or name in VIEWSET_ACTIONS
        or hasattr(handler, "mapping")  # an @action
    ]


def refuse_async_view(cls: type) -> None:
    """``@idempotent`` on the ``dispatch`` of a DRF view (adrf's) with an
    ``async def`` handler: refused at its first request, whatever the method,
    as the mixin refuses such a class when it is created."""
    if cls in _SYNC_VIEWS:
        return
    name = next(iter(async_handlers(cls)), None)
    if name is not None:
        raise TypeError(async_handler_refused(cls.__name__, name))
    _SYNC_VIEWS.add(cls)


# View classes found without async handlers (classes are few; not bounded).
_SYNC_VIEWS: set[type] = set()


def async_handler_refused(view: str, name: str) -> str:
    return (
        f"{view}.{name} is async, and the DRF door (IdempotencyMixin, @idempotent on "
        "dispatch) protects DRF's synchronous handlers only: make it a plain def, or use "
        "@idempotent on an async Django view."
    )


def check_support(options: ViewOptions, where: str) -> None:
    """Options that need something not installed, or not built yet, fail loudly."""
    from idempotency import crypto

    if options.sensitive and not crypto.available():
        raise TypeError(
            f"{where} asks for sensitive responses, which are encrypted with the "
            f"'cryptography' package: {crypto.INSTALL_HINT}."
        )


__all__ = ["IdempotencyMixin", "IdempotencyTokenView", "ProblemException", "OPTIONS_ATTRIBUTE"]
