"""Rules for plain values: durations, flags, counts, choices and method names."""

from __future__ import annotations

import math
from collections.abc import Collection
from datetime import datetime, timedelta, timezone

from idempotency.conf import ANONYMOUS_POLICIES, STORES
from idempotency.validation.invalid import Invalid, is_collection, is_int, quote

# RFC 9110 section 9.2.1: these methods are safe, so nothing needs replaying.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Waiting holds a worker; a wait longer than this is a misunderstanding of
# the setting (it bounds one duplicate, not a queue).
MAX_WAIT = timedelta(minutes=10)
# Every duration must end before this, as its message says. The database adds
# it to its own clock at each request, later than this check: up to the end
# of 9999 (Python's and MariaDB's last datetime) MariaDB would refuse the
# claim with a datetime overflow, SQLite store NULL and PostgreSQL a year
# 10000 that no Python datetime can read back. The year is the margin.
LATEST_END = datetime(9999, 1, 1, tzinfo=timezone.utc)


def _as_duration(value: object) -> timedelta | None:
    """``value`` as a duration a database can add to now, or ``None``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        duration = value if isinstance(value, timedelta) else timedelta(seconds=value)  # type: ignore[arg-type]
        if datetime.now(timezone.utc) + duration >= LATEST_END:
            return None
    except (OverflowError, ValueError, TypeError):
        return None
    return duration


def duration(name: str, value: object, *, zero: bool = False) -> Invalid | None:
    """A positive (or, with ``zero``, non-negative) timedelta or number of seconds."""
    if not (isinstance(value, timedelta | float) or is_int(value)):
        return Invalid(
            TypeError,
            f"{name} is {quote(value)}: give a number of seconds (int or float) or a "
            'datetime.timedelta; write 3600, not "3600" or "1h".',
        )
    parsed = _as_duration(value)
    if parsed is None or parsed < timedelta(0) or (parsed == timedelta(0) and not zero):
        lowest = "0 or more" if zero else "above zero"
        return Invalid(
            ValueError,
            f"{name} is {quote(value)}: give a duration {lowest} that ends before the year 9999.",
        )
    return None


def wait(name: str, value: object) -> Invalid | None:
    """How long a duplicate waits for the running first request: 0 up to ``MAX_WAIT``."""
    problem = duration(name, value, zero=True)
    if problem is not None:
        return problem
    if _as_duration(value) > MAX_WAIT:  # type: ignore[operator]
        return Invalid(
            ValueError,
            f"{name} is {quote(value)}: give at most {int(MAX_WAIT.total_seconds())} seconds; "
            "a duplicate waits for one running request, holding a worker meanwhile.",
        )
    return None


def boolean(name: str, value: object) -> Invalid | None:
    if isinstance(value, bool):
        return None
    return Invalid(
        TypeError,
        f'{name} is {quote(value)}: give True or False (the string "False" is true).',
    )


def positive_int(name: str, value: object) -> Invalid | None:
    if is_int(value) and value > 0:  # type: ignore[operator]
        return None
    return Invalid(TypeError, f"{name} is {quote(value)}: give a positive int, such as 255.")


def byte_count(name: str, value: object) -> Invalid | None:
    if is_int(value) and value >= 0:  # type: ignore[operator]
        return None
    return Invalid(
        TypeError,
        f"{name} is {quote(value)}: give a number of bytes (an int, 0 or more), "
        "such as 1024 * 1024.",
    )


def http_statuses(name: str, value: object) -> Invalid | None:
    """A collection of HTTP statuses, 100 to 599."""
    if is_collection(value) and all(is_int(s) and 100 <= s <= 599 for s in value):  # type: ignore[attr-defined]
        return None
    return Invalid(
        TypeError,
        f"{name} is {quote(value)}: give a tuple of HTTP statuses (ints from 100 to 599), "
        "such as (401, 403, 408, 409, 425, 429).",
    )


def no_success_statuses(name: str, value: object) -> Invalid | None:
    """Statuses to release, none of them a 2xx: a released success is run again on retry."""
    if not is_collection(value):
        return None
    successes = sorted({s for s in value if is_int(s) and 200 <= s <= 299})  # type: ignore[attr-defined]
    if not successes:
        return None
    listed = ", ".join(map(str, successes))
    return Invalid(
        ValueError,
        f"{name} lists {listed}: a success is never stored, so every retry of such a "
        "request runs the view again; remove the 2xx statuses.",
    )


def database_alias(name: str, value: object) -> Invalid | None:
    """The type of an alias; whether settings.DATABASES has it is the checks' concern."""
    if isinstance(value, str):
        return None
    return Invalid(TypeError, f'{name} is {quote(value)}: give a database alias such as "default".')


def _choice(name: str, value: object, choices: tuple[str, ...]) -> Invalid | None:
    if isinstance(value, str) and value in choices:
        return None
    listed = ", ".join(map(repr, choices[:-1])) + f" or {choices[-1]!r}"
    return Invalid(ValueError, f"{name} is {quote(value)}: give {listed}.")


def anonymous_policy(name: str, value: object) -> Invalid | None:
    """What happens to a key from a caller with no principal (contract section 3)."""
    return _choice(name, value, ANONYMOUS_POLICIES)


def store(name: str, value: object) -> Invalid | None:
    """Where the records live (contract section 6)."""
    return _choice(name, value, STORES)


def methods(name: str, value: object) -> Invalid | None:
    """A collection of unsafe HTTP method names, in any case."""
    if not isinstance(value, Collection) or not is_collection(value):
        return _not_methods(name, value)
    if not all(isinstance(m, str) for m in value):
        return _not_methods(name, value)
    names = {m.upper() for m in value}
    safe = sorted(names & SAFE_METHODS)
    if safe:
        return Invalid(
            ValueError,
            f"{name} names {', '.join(safe)}: remove safe methods; they change nothing, "
            "so replaying them would only serve stale answers.",
        )
    if not names or names - UNSAFE_METHODS:
        return Invalid(
            ValueError,
            f"{name} is {quote(value)}: give one or more of POST, PUT, PATCH and DELETE.",
        )
    return None


def _not_methods(name: str, value: object) -> Invalid:
    return Invalid(
        TypeError,
        f'{name} is {quote(value)}: give a tuple of method names, such as ("POST",); '
        "a bare string is read as the set of its letters.",
    )
