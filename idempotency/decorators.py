"""``@idempotent``: the door for function views, view methods and async views."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar, overload

from django.http import HttpRequest
from django.http.response import HttpResponseBase

from idempotency import http
from idempotency.conf import RequestFunction
from idempotency.options import OPTIONS_ATTRIBUTE, ViewOptions

View = TypeVar("View", bound=Callable[..., Any])


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
    token: bool = False,
    wait: timedelta | float | None = None,
    atomic: bool = True,
    sensitive: bool = False,
) -> Callable[[View], View]: ...


def idempotent(
    view: View | None = None,
    /,
    *,
    scope: str | RequestFunction | None = None,
    required: bool | None = None,
    ttl: timedelta | float | None = None,
    token: bool = False,
    wait: timedelta | float | None = None,
    atomic: bool = True,
    sensitive: bool = False,
) -> View | Callable[[View], View]:
    """Make a view's unsafe methods idempotent under the ``Idempotency-Key`` header.

    Use bare or with keyword options; an option left ``None`` is read from
    ``settings.IDEMPOTENCY`` at request time. ``scope`` is a callable
    ``(request) -> str`` or its dotted path. ``atomic=False`` lets a view own
    its transactions (its writes and the stored response then commit
    separately); ``sensitive=True`` stores the response encrypted under the
    key. On DRF, place it *below* ``@api_view``; on a DRF view's ``dispatch``
    it protects the handler after DRF's authentication.
    """
    if view is not None and not callable(view):
        raise TypeError(
            f"@idempotent takes options as keywords, got {view!r}; "
            "write @idempotent(ttl=3600), not @idempotent(3600)."
        )
    options = ViewOptions(
        scope=scope, required=required, ttl=ttl, token=token, wait=wait, atomic=atomic,
        sensitive=sensitive,
    )  # fmt: skip
    options.check(lambda name: f"@idempotent({name}=...)")
    _check_support(options)

    def decorate(function: View) -> View:
        _refuse_misuse(function)
        if inspect.iscoroutinefunction(function):
            wrapper = _async_wrapper(function, options)
        else:
            wrapper = _sync_wrapper(function, options)
        setattr(wrapper, OPTIONS_ATTRIBUTE, options)
        return wrapper  # type: ignore[return-value]

    return decorate if view is None else decorate(view)


def _sync_wrapper(function: Callable[..., Any], options: ViewOptions) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> HttpResponseBase:
        request, view = _find_request(function, args)
        call = functools.partial(function, *args, **kwargs)
        if _is_drf_request(request):
            from idempotency import drf

            return drf.protect(request, call, options)  # type: ignore[arg-type]
        if view is not None and _is_drf_view(view):
            # On an APIView's dispatch, before DRF authenticates: protect the
            # handler DRF calls after authentication instead (contract
            # section 3, "Scope").
            from idempotency import drf

            drf.refuse_async_view(type(view))  # an adrf view's async handler: TypeError
            drf.arm(view, request, lambda: options)
            return call()  # type: ignore[no-any-return]
        if getattr(type(view), "view_is_async", False):
            # method_decorator on an async class-based view's dispatch, which
            # returns the handler's coroutine: protect it as an async view.
            return http.aprotect(request, call, options)  # type: ignore[return-value]
        return http.protect(request, call, options)

    return wrapper


def _async_wrapper(function: Callable[..., Any], options: ViewOptions) -> Callable[..., Any]:
    @functools.wraps(function)
    async def wrapper(*args: Any, **kwargs: Any) -> HttpResponseBase:
        request, view = _find_request(function, args)
        if _is_drf_request(request) or (view is not None and _is_drf_view(view)):
            raise TypeError(
                f"@idempotent on {function.__qualname__}: DRF views run synchronously; make "
                "the handler a plain def, or decorate an async Django view."
            )
        return await http.aprotect(request, functools.partial(function, *args, **kwargs), options)

    return wrapper


def _check_support(options: ViewOptions) -> None:
    from idempotency.drf import check_support

    check_support(options, "@idempotent")


def _refuse_misuse(function: Callable[..., Any]) -> None:
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


def _find_request(function: Callable[..., Any], args: tuple[Any, ...]) -> tuple[HttpRequest, Any]:
    """The request among the arguments, and the view instance of a method.

    Functions get (request, ...), methods (self, request, ...), and
    ``method_decorator`` a partial of the bound method with (request, ...).
    DRF's Request wraps an HttpRequest instead of subclassing it.
    """
    for position, candidate in enumerate(args[:2]):
        if isinstance(getattr(candidate, "_request", candidate), HttpRequest):
            view = (
                args[0]
                if position == 1
                else getattr(getattr(function, "func", None), "__self__", None)
            )
            return candidate, view
    raise TypeError(
        f"@idempotent could not find the request among the arguments of "
        f"{getattr(function, '__qualname__', function)!r}; decorate a view function "
        "(request, ...) or a view method (self, request, ...)."
    )


def _is_drf_request(request: Any) -> bool:
    return hasattr(request, "parser_context")


def _is_drf_view(view: Any) -> bool:
    from rest_framework.views import APIView

    return isinstance(view, APIView)
