"""What every check shares: reading the configured values, making messages, the guard."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from idempotency.conf import DEFAULTS
from idempotency.validation import quote

Check = Callable[..., list[CheckMessage]]
DOCS = "see docs/settings.md"
MISSING: Any = object()


def configured() -> Mapping[Any, Any] | None:
    """``settings.IDEMPOTENCY``, or ``None`` when it is not a mapping (E001)."""
    value = getattr(settings, "IDEMPOTENCY", {})
    return value if isinstance(value, Mapping) else None


def setting(name: str) -> Any:
    """The value the accessor would use, or ``MISSING`` when E001 applies."""
    values = configured()
    return MISSING if values is None else values.get(name, DEFAULTS[name])


def label(name: str) -> str:
    return f'IDEMPOTENCY["{name}"]'


def message(check_id: str, msg: str, hint: str) -> CheckMessage:
    kind = Error if check_id.startswith("idempotency.E") else Warning
    return kind(msg, hint=hint, id=check_id)


def guarded(subject: str) -> Callable[[Check], Check]:
    """A check that never raises (STYLE point 8): any surprise is idempotency.E017."""

    def decorate(check: Check) -> Check:
        @functools.wraps(check)
        def run(
            app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
        ) -> list[CheckMessage]:
            try:
                return check(app_configs, **kwargs)
            except Exception as error:
                return [
                    message(
                        "idempotency.E017",
                        f"{subject} could not be checked, reading it raised {quote(error)}: "
                        "set plain values (str, int, bool, timedelta, list, tuple, dict).",
                        hint="The package reads these values on every request and would "
                        "fail the same way.",
                    )
                ]

        return run

    return decorate
