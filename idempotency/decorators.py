"""``@idempotent``: the adapter for function views and view methods."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar, overload

from django.http import HttpRequest
from django.http.response import HttpResponseBase

from idempotency import engine
from idempotency.conf import RequestFunction
from idempotency.engine import CallView, ViewOptions
from idempotency.problems import Problem, render_problem

View = TypeVar("View", bound=Callable[..., Any])

# Marks a wrapped view so that IdempotencyMixin does not wrap it a second time.
WRAPPED_MARK = "_idempotency_wrapped"


@overload
def idempotent(view: View, /) -> View: ...


@overload
def idempotent(
    view: None = None,
    /,
    *,
    scope: str | RequestFunction | None = None,
    required: bool | None = None,
    ttl: timedelta | float | None = None,
) -> Callable[[View], View]: ...


def idempotent(
    view: View | None = None,
    /,
    *,
    scope: str | RequestFunction | None = None,
    required: bool | None = None,
    ttl: timedelta | float | None = None,
) -> View | Callable[[View], View]:
    """Make a view's unsafe methods idempotent under the ``Idempotency-Key`` header.

    Use bare or with keyword options; each option left ``None`` is read from
    ``settings.IDEMPOTENCY`` at request time. ``scope`` is a callable
    ``(request) -> str`` or its dotted path. On DRF, place it *below*
    ``@api_view`` (or on a view method) so it runs after authentication.
    """
    options = ViewOptions(scope=scope, required=required, ttl=ttl)

    def decorate(function: View) -> View:
        _refuse_misuse(function)

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> HttpResponseBase:
            request = _find_request(function, args)
            return respond(request, lambda: function(*args, **kwargs), options)

        setattr(wrapper, WRAPPED_MARK, True)
        return wrapper  # type: ignore[return-value]

    if view is None:
        return decorate
    if not callable(view):
        raise TypeError(
            f"@idempotent takes options as keywords, got {view!r}; "
            "write @idempotent(ttl=3600), not @idempotent(3600)."
        )
    return decorate(view)


def respond(request: HttpRequest, call_view: CallView, options: ViewOptions) -> HttpResponseBase:
    """Run ``call_view`` through the engine and render any refusal."""
    if hasattr(request, "parser_context"):  # a DRF Request
        from idempotency.drf import finalize

        def call_drf_view() -> HttpResponseBase:
            return finalize(request, call_view())

        call = call_drf_view
    else:
        call = call_view
    try:
        return engine.run(request, call, options)
    except Problem as problem:
        return render_problem(problem)


def _refuse_misuse(function: Callable[..., Any]) -> None:
    if inspect.iscoroutinefunction(function):
        raise TypeError(
            f"@idempotent does not support async views yet ({function.__qualname__}); "
            "make the view synchronous or leave it undecorated."
        )
    if inspect.isclass(function):
        raise TypeError(
            f"@idempotent decorates functions and methods, not the class {function.__name__}; "
            "for a DRF view add idempotency.drf.IdempotencyMixin to its bases, or decorate "
            "a method: @method_decorator(idempotent, name='post')."
        )
    view_class = getattr(function, "cls", None) or getattr(function, "view_class", None)
    if view_class is not None and hasattr(view_class, "initial"):
        raise TypeError(
            "Put @idempotent below @api_view so it runs after DRF authentication:\n"
            "    @api_view(['POST'])\n"
            "    @idempotent\n"
            "    def pay(request): ..."
        )


def _find_request(function: Callable[..., Any], args: tuple[Any, ...]) -> HttpRequest:
    # Functions get (request, ...), methods (self, request, ...). DRF's Request
    # wraps an HttpRequest instead of subclassing it.
    for candidate in args[:2]:
        if isinstance(getattr(candidate, "_request", candidate), HttpRequest):
            request: HttpRequest = candidate
            return request
    raise TypeError(
        f"@idempotent could not find the request among the arguments of "
        f"{function.__qualname__}; decorate a view function (request, ...) or a view "
        "method (self, request, ...)."
    )
