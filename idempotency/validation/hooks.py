"""Rules for hooks: ``SCOPE``, ``FINGERPRINT`` and the per-view ``scope=``."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from django.utils.module_loading import import_string

from idempotency.validation.invalid import Invalid, quote


def hook(name: str, value: object) -> Invalid | None:
    """A callable ``(request) -> str`` or its dotted path (imported later, by ``hook_target``).

    A callable must accept the request as its one positional argument
    (``ValueError`` otherwise): anything else fails on every request.
    """
    if isinstance(value, str) and value.strip():
        return None
    if callable(value):
        return _takes_the_request(name, value, value)
    return Invalid(
        TypeError,
        f"{name} is {quote(value)}: give a function (request) -> str or its dotted path, "
        'such as "myapp.module.function".',
    )


def hook_target(name: str, value: object) -> Invalid | None:
    """What a dotted-path hook names: it imports, is callable and takes the request.

    Imports the module, as the first request would. ``ImportError`` when it
    does not import, ``TypeError`` when it names no function, ``ValueError``
    for a function that cannot take the request.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        target = import_string(value)
    except Exception as error:  # ImportError, or anything the module raises
        return Invalid(
            ImportError,
            f"{name} is {quote(value)}, which does not import ({quote(error)}): fix the "
            'dotted path, written "module.function".',
        )
    if not callable(target):
        return Invalid(
            TypeError,
            f"{name} is {quote(value)}, which imports {quote(target)}, not a function: "
            "point it at a function (request) -> str.",
        )
    return _takes_the_request(name, value, target)


def _takes_the_request(name: str, shown: object, function: Callable[..., object]) -> Invalid | None:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None  # no signature to read (some builtins): it is called as it is
    try:
        signature.bind(object())
    except TypeError:
        return Invalid(
            ValueError,
            f"{name} is {quote(shown)}, whose signature {signature} cannot take the request "
            "alone: give a function with one positional parameter, such as "
            "def function(request): ...",
        )
    return None
