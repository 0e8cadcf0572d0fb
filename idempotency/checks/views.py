"""Per-view options that can only be checked once every module has loaded.

``@idempotent(scope="module.function")`` takes a dotted path without
importing it: importing at decoration could meet the view's own module half
imported. The URLconf is complete when checks run, so the paths are imported
here, as the first request would import them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.core.checks import CheckMessage
from django.urls import URLPattern, URLResolver, get_resolver

from idempotency import validation
from idempotency.checks.messages import guarded, message
from idempotency.options import ViewOptions, options_of


@guarded("the URLconf's idempotent views")
def check_view_scope_paths(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    found = []
    for label, scope in sorted(set(_dotted_scopes())):
        problem = validation.hook_target(label, scope)
        if problem is not None:
            found.append(
                message(
                    "idempotency.E030",
                    problem.message,
                    hint="Every keyed request to this view would be answered 500 misconfigured.",
                )
            )
    return found


def _dotted_scopes() -> Iterator[tuple[str, str]]:
    for callback in _callbacks(get_resolver().url_patterns):
        for label, options in _options(callback):
            if isinstance(options.scope, str):
                yield label, options.scope


def _callbacks(patterns: Any) -> Iterator[Any]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _callbacks(pattern.url_patterns)
        elif isinstance(pattern, URLPattern):
            yield pattern.callback


def _options(callback: Any) -> Iterator[tuple[str, ViewOptions]]:
    options = options_of(callback)
    if options is not None:
        yield f"The scope of @idempotent on {_name(callback)}", options
    view = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    if view is None:
        return
    for name in dir(view):
        options = options_of(getattr(view, name, None))
        if options is not None:
            yield f"The scope of @idempotent on {_name(view)}.{name}", options
    scope = getattr(view, "idempotency_scope", None)
    if isinstance(scope, str):
        yield f"{_name(view)}.idempotency_scope", ViewOptions(scope=scope)


def _name(callback: Any) -> str:
    return f"{getattr(callback, '__module__', '?')}.{getattr(callback, '__qualname__', '?')}"


CHECKS = (check_view_scope_paths,)
