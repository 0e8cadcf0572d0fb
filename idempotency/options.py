"""Per-view options: what ``@idempotent`` and ``IdempotencyMixin`` may override.

An option left ``None`` means "ask the settings now" (STYLE 6). Options are
validated when the view is decorated or its class created, with the same
rules as the settings' system checks (``idempotency.validation``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any

from idempotency import validation
from idempotency.conf import RequestFunction
from idempotency.validation import UNSAFE_METHODS

# The attribute that marks a callable wrapped by ``@idempotent`` and holds its
# options: the mixin does not wrap such a handler again, and the OpenAPI hook
# reads it.
OPTIONS_ATTRIBUTE = "__idempotency__"


@dataclass(frozen=True)
class ViewOptions:
    scope: str | RequestFunction | None = None
    required: bool | None = None
    ttl: timedelta | float | None = None
    token: bool = False
    wait: timedelta | float | None = None
    # False: the view owns its transactions (transaction.atomic(durable=True));
    # its writes and the stored response then commit separately.
    atomic: bool = True
    # True: the stored response is encrypted under the idempotency key.
    sensitive: bool = False
    methods: frozenset[str] = UNSAFE_METHODS

    def __post_init__(self) -> None:
        # Method names come in from the decorator, the mixin's attribute and
        # its hook, in any case; requests are matched in upper case. Only a
        # collection of names is normalised: anything else stays as given, for
        # ``problems`` to name it.
        methods: Any = self.methods
        if methods is UNSAFE_METHODS:
            return
        if validation.is_collection(methods) and all(isinstance(m, str) for m in methods):
            object.__setattr__(self, "methods", frozenset(m.upper() for m in methods))

    def problems(self, label: Callable[[str], str]) -> list[validation.Invalid]:
        """Every broken rule, each message naming the option as ``label(field)`` says."""
        found = [
            validation.hook(label("scope"), self.scope) if self.scope is not None else None,
            validation.boolean(label("required"), self.required) if self.required is not None else None,
            validation.duration(label("ttl"), self.ttl) if self.ttl is not None else None,
            validation.boolean(label("token"), self.token),
            validation.wait(label("wait"), self.wait) if self.wait is not None else None,
            validation.boolean(label("atomic"), self.atomic),
            validation.boolean(label("sensitive"), self.sensitive),
            validation.methods(label("methods"), self.methods),
        ]  # fmt: skip
        return [problem for problem in found if problem is not None]

    def check(self, label: Callable[[str], str]) -> None:
        """Raise the first broken rule (``TypeError`` or ``ValueError``)."""
        for problem in self.problems(label):
            raise problem.exception()


OPTION_NAMES = tuple(f.name for f in fields(ViewOptions))


def options_of(view: Any) -> ViewOptions | None:
    """The options of a callable wrapped by ``@idempotent``, or ``None``."""
    options = getattr(view, OPTIONS_ATTRIBUTE, None)
    return options if isinstance(options, ViewOptions) else None
