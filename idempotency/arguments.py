"""The key and the fingerprint of one function call, from its arguments.

Contract section 7: the key is a parameter's value or what a callable over
the arguments returns; the fingerprint covers the arguments as canonical JSON
(or what ``fingerprint=`` returns), the task running the call left out.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from collections.abc import Callable
from typing import Any
from uuid import UUID

from idempotency.canonical import tagged

KeyOf = Callable[..., object]


def call_key(
    name: str,
    key: KeyOf | str,
    bound: inspect.BoundArguments,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> str:
    value = bound.arguments[key] if isinstance(key, str) else key(*args, **kwargs)
    # The message names the key's type, never its value: keys are secrets.
    if isinstance(value, bool) or not isinstance(value, str | int | UUID):
        raise ValueError(
            f"The idempotency key of a call to {name} is a {type(value).__name__}; the key "
            "must be a non-empty str, an int or a UUID."
        )
    try:
        text = str(value)
    except ValueError as error:  # an int past Python's 4300-digit conversion limit
        raise ValueError(
            f"The idempotency key of a call to {name} is an int too long to write out; "
            "pass it as a str."
        ) from error
    if not text:
        raise ValueError(
            f"The idempotency key of a call to {name} is empty; the key must be a "
            "non-empty str, an int or a UUID."
        )
    return text


def call_fingerprint(
    name: str,
    fingerprint: Callable[..., object] | None,
    arguments: dict[str, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> str:
    if fingerprint is not None:
        custom = fingerprint(*args, **kwargs)
        if not isinstance(custom, str):
            raise TypeError(
                f"The fingerprint= of {name} returned a {type(custom).__name__}; it must "
                "return a str, such as a hex digest of what makes two calls the same."
            )
        data = b"c" + custom.encode("utf-8", "surrogatepass")
    else:
        try:
            # One-to-one and typed: {1: x} is not {"1": x}, a set not a list,
            # Decimal("1") not "1". Tuples are lists, as JSON (and Celery's
            # serialiser, on redelivery) has them.
            data = b"a" + tagged(_tuples_as_lists(arguments))
        except (TypeError, RecursionError) as error:
            raise TypeError(
                f"The arguments of {name} cannot be fingerprinted exactly (a "
                f"{type(error).__name__} for one of them); pass fingerprint=a callable over "
                "the arguments to @idempotent_function."
            ) from error
    return hashlib.sha256(name.encode() + b"\x00" + data).hexdigest()


def _tuples_as_lists(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_tuples_as_lists(item) for item in value]
    if isinstance(value, dict):
        return {key: _tuples_as_lists(item) for key, item in value.items()}
    return value


def is_bound_task(args: tuple[Any, ...]) -> bool:
    """Whether the first argument is the task running the call, not data: a
    ``bind=True`` Celery task, or a ``takes_context=True`` Django task's context."""
    if not args:
        return False
    # Looked up only where the framework is already imported: a plain function
    # never imports Celery or the task frameworks.
    for module_name, class_name in _CARRIERS:
        module = sys.modules.get(module_name)
        if module is not None and isinstance(args[0], getattr(module, class_name)):
            return True
    return False


_CARRIERS = (
    ("celery.app.task", "Task"),
    ("django.tasks.base", "TaskContext"),
    ("django_tasks.base", "TaskContext"),
)
