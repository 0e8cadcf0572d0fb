"""``@idempotent_function``: the door for plain functions and task bodies.

From a call it builds the attempt (key, scope, fingerprint of the arguments);
from the engine's outcome it builds the call's answer: the function's return
value, the stored value replayed (as ``json.loads`` gives it back), or an
exception (contract section 7). It decides nothing the engine decides.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar, cast

from idempotency import engine, validation
from idempotency.arguments import KeyOf, call_fingerprint, call_key, is_bound_task
from idempotency.conf import as_timedelta, idempotency_settings
from idempotency.keys import digests
from idempotency.problems import (
    DurableBlockRefused,
    KeyReused,
    Problem,
    RequestInProgress,
    RequestSuperseded,
    ResponseNotReplayable,
)
from idempotency.scope import scope_problem
from idempotency.stores import Attempt, StoredResponse, get_store

Function = TypeVar("Function", bound=Callable[..., Any])


# What the record's method column says of a function's record (the admin
# shows "CALL module.function").
METHOD = "CALL"
JSON_CONTENT_TYPE = "application/json"
IN_PROGRESS_CHOICES = ("raise", "retry")
# The attribute that marks a function wrapped by ``@idempotent_function``; the
# Celery checks find protected tasks by it.
OPTIONS_ATTRIBUTE = "__idempotent_function__"


class IdempotencyError(Exception):
    """Base of what ``idempotent_function`` raises."""


class KeyReusedError(IdempotencyError):
    """The key was used for a call with other arguments; the function did not run."""


class InProgressError(IdempotencyError):
    """A call holding the key is still running; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class FunctionOptions:
    name: str  # module.qualname: the record's path, and part of the fingerprint
    key: KeyOf | str
    scope: str
    ttl: timedelta | float | None
    fingerprint: Callable[..., object] | None
    on_in_progress: str


@dataclass(frozen=True)
class FunctionDoor:
    def keep(self, result: Any) -> StoredResponse:
        try:
            body = json.dumps(result, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as error:
            # Raised from the engine's finish: nothing is stored and the
            # function's writes roll back with the release.
            raise TypeError(
                f"@idempotent_function needs a JSON-serialisable return value, got "
                f"{type(result).__name__}: {error}; return dicts, lists, str, numbers, "
                "bools or None."
            ) from error
        encoded = body.encode()
        if len(encoded) > idempotency_settings.MAX_STORED_RESPONSE_BYTES:
            # As for a view's large response: the call keeps its effect and its
            # caller the value, and the record says it ran, so no retry runs again.
            return StoredResponse(200, {"Content-Type": JSON_CONTENT_TYPE}, None)
        return StoredResponse(200, {"Content-Type": JSON_CONTENT_TYPE}, encoded)

    def replay(self, stored: StoredResponse) -> Any:
        return json.loads(stored.body or b"null")

    def signal_arguments(self) -> dict[str, Any]:
        return {"request": None}


def idempotent_function(
    key: KeyOf | str,
    *,
    scope: str = "functions",
    ttl: timedelta | float | None = None,
    fingerprint: Callable[..., object] | None = None,
    on_in_progress: str = "raise",
) -> Callable[[Function], Function]:
    """Run the decorated function at most once per ``scope`` and key.

    ``key`` is a parameter's name or a callable taking the call's arguments
    (a bound Celery task's ``self`` included, so ``self.request.id`` works).
    ``fingerprint`` is a callable over the arguments replacing their canonical
    JSON. ``on_in_progress="retry"`` makes a Celery task retry when the key is
    held, its countdown the holder's remaining lock. Place it under
    ``@app.task`` / ``@shared_task``.
    """
    _check_options(key, scope, ttl, fingerprint, on_in_progress)

    def decorate(function: Function) -> Function:
        if inspect.iscoroutinefunction(function):
            raise TypeError(
                "@idempotent_function does not support async functions yet; decorate a "
                "def function, or protect the async view with @idempotent."
            )
        signature = inspect.signature(function)
        if isinstance(key, str) and key not in signature.parameters:
            raise TypeError(
                f"@idempotent_function(key={key!r}): {function.__qualname__} has no parameter "
                f"{key!r}; name one of {list(signature.parameters)} or pass a callable."
            )
        options = FunctionOptions(
            f"{function.__module__}.{function.__qualname__}", key, scope, ttl, fingerprint,
            on_in_progress,
        )  # fmt: skip

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return _call(function, signature, options, args, kwargs)
            except InProgressError as error:
                task = _task_to_retry(options, args)
                if task is None:
                    raise
                countdown = max(math.ceil(error.retry_after), 1)
                raise task.retry(countdown=countdown, exc=error) from error

        setattr(wrapper, OPTIONS_ATTRIBUTE, options)
        return cast(Function, wrapper)

    return decorate


def _call(
    function: Callable[..., Any],
    signature: inspect.Signature,
    options: FunctionOptions,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    attempt = _attempt(signature, options, args, kwargs)
    steps = engine.protect(get_store(), attempt, FunctionDoor(), timedelta(0))
    try:
        return engine.drive(steps, lambda: function(*args, **kwargs))
    except DurableBlockRefused as problem:
        # Functions have no atomic=False: Django's own error, unchanged.
        raise problem.__cause__ from None  # type: ignore[misc]
    except KeyReused as problem:
        raise KeyReusedError(
            f"The idempotency key of this call to {options.name} was used for a call with "
            "other arguments; use a new key for a new operation."
        ) from problem
    except (RequestInProgress, RequestSuperseded) as problem:
        remaining = getattr(problem, "lock_remaining", None)
        seconds = remaining.total_seconds() if remaining is not None else problem.retry_after
        raise InProgressError(
            f"A call to {options.name} with this idempotency key is still running; "
            f"retry after {seconds:.1f} s.",
            max(float(seconds or 0), 0.0),
        ) from problem
    except ResponseNotReplayable as problem:
        raise IdempotencyError(
            f"The call to {options.name} with this idempotency key ran, but its return value "
            "was larger than MAX_STORED_RESPONSE_BYTES, so it was not kept and cannot be "
            "returned again; the function does not run twice. Return less (an id to look the "
            "result up by), or raise MAX_STORED_RESPONSE_BYTES."
        ) from problem
    except Problem as problem:
        raise IdempotencyError(problem.detail) from problem


def _attempt(
    signature: inspect.Signature,
    options: FunctionOptions,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Attempt:
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    if is_bound_task(args):
        arguments.pop(next(iter(signature.parameters)), None)
    key = call_key(options.name, options.key, bound, args, kwargs)
    key_digests = digests(key)
    return Attempt(
        scope=options.scope,
        key=key_digests[0],
        fingerprint=call_fingerprint(options.name, options.fingerprint, arguments, args, kwargs),
        method=METHOD,
        path=options.name,
        ttl=as_timedelta(options.ttl) if options.ttl is not None else idempotency_settings.TTL,
        lock_for=idempotency_settings.LOCK_TIMEOUT,
        previous_keys=key_digests[1:],
    )


def _task_to_retry(options: FunctionOptions, args: tuple[Any, ...]) -> Any:
    """The Celery task to retry for ``on_in_progress="retry"``, or ``None`` to raise."""
    if options.on_in_progress != "retry":
        return None
    task_module = sys.modules.get("celery.app.task")
    if args and task_module is not None and isinstance(args[0], task_module.Task):
        return args[0]
    celery = sys.modules.get("celery")
    task = getattr(celery, "current_task", None) if celery is not None else None
    # Outside a worker (a direct call) there is nothing to retry: raise.
    return task if task is not None and getattr(task.request, "id", None) else None


def _check_options(
    key: object, scope: object, ttl: object, fingerprint: object, on_in_progress: object
) -> None:
    if not (callable(key) or (isinstance(key, str) and key)):
        raise TypeError(
            f"@idempotent_function(key={key!r}): pass the name of the parameter that holds "
            "the key, or a callable over the arguments: @idempotent_function(key='order_id')."
        )
    problem = scope_problem(scope)
    if problem is not None:
        raise TypeError(f"@idempotent_function(scope=...) {problem.replace('returned', 'is')}.")
    if ttl is not None:
        invalid = validation.duration("@idempotent_function(ttl=...)", ttl)
        if invalid is not None:
            raise invalid.exception()
    if fingerprint is not None and not callable(fingerprint):
        raise TypeError(
            f"@idempotent_function(fingerprint={fingerprint!r}): pass a callable over the "
            "call's arguments that returns a str."
        )
    if on_in_progress not in IN_PROGRESS_CHOICES:
        raise ValueError(
            f"@idempotent_function(on_in_progress={on_in_progress!r}): use 'raise' (the "
            "default) or 'retry' (Celery tasks: self.retry with the lock's countdown)."
        )
