"""System checks (``manage.py check``) for ``settings.IDEMPOTENCY`` and its neighbours.

``LEDGER`` lists every id: ``E`` when the package cannot work, ``W`` when it
works but looks wrong. docs/checks.md has one heading per id. An id names one
problem forever: a retired id moves to ``RETIRED`` and is never reused.
A check never raises: ``_guarded`` turns any surprise into idempotency.E017.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from django.apps import AppConfig, apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.utils.module_loading import import_string

from idempotency.conf import DEFAULTS, as_timedelta
from idempotency.fields import KEY_LENGTH
from idempotency.responses import NEVER_STORED_HEADERS, REPLAYED_HEADER

LEDGER: Mapping[str, str] = {
    "idempotency.E001": "settings.IDEMPOTENCY is not a dict",
    "idempotency.E002": "settings.IDEMPOTENCY has an unknown key",
    "idempotency.E003": "HEADER is not a str",
    "idempotency.E004": "HEADER is not a valid HTTP header name",
    "idempotency.E005": "REQUIRED is not a bool",
    "idempotency.E006": "TTL or LOCK_TIMEOUT is not a number of seconds or a timedelta",
    "idempotency.E007": "TTL or LOCK_TIMEOUT is zero, negative or out of range",
    "idempotency.E008": "KEY_MAX_LENGTH is not a positive int",
    "idempotency.E009": "REPLAY_HEADERS is not a list or tuple of header names",
    "idempotency.E010": "RELEASE_STATUSES is not a collection of HTTP statuses (100 to 599)",
    "idempotency.E011": "MAX_STORED_RESPONSE_BYTES is not a non-negative int",
    "idempotency.E012": "DATABASE is not a str",
    "idempotency.E013": "DATABASE is not an alias in settings.DATABASES",
    "idempotency.E014": "SCOPE or FINGERPRINT is neither a callable nor a dotted path",
    "idempotency.E015": "SCOPE or FINGERPRINT is a dotted path that does not import",
    "idempotency.E016": "SCOPE or FINGERPRINT is a dotted path to something not callable",
    "idempotency.E017": "a setting's value raised an exception while being checked",
    "idempotency.W001": "LOCK_TIMEOUT is longer than TTL",
    "idempotency.W002": "KEY_MAX_LENGTH is longer than the key column",
    "idempotency.W003": "django-cors-headers does not allow the HEADER request header",
    "idempotency.W004": "django-cors-headers does not expose Idempotent-Replayed",
    "idempotency.W005": "REPLAY_HEADERS lists a credential header, which is never stored",
    "idempotency.W006": "HEADER contains an underscore, which servers drop",
}
RETIRED: frozenset[str] = frozenset()

Check = Callable[..., list[CheckMessage]]
# RFC 9110 section 5.1: a field name is a token (section 5.6.2).
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
DOCS = "see docs/settings.md"
_MISSING = object()


def _message(check_id: str, msg: str, hint: str) -> CheckMessage:
    kind = Error if check_id.startswith("idempotency.E") else Warning
    return kind(msg, hint=hint, id=check_id)


def _problem(check_id: str, msg: str, hint: str) -> list[CheckMessage]:
    return [_message(check_id, msg, hint)]


def _quote(value: object) -> str:
    """``repr`` for a message: short, and safe for objects whose ``repr`` raises."""
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= 80 else text[:77] + "..."


def _guarded(subject: str) -> Callable[[Check], Check]:
    def decorate(check: Check) -> Check:
        @functools.wraps(check)
        def guarded(
            app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
        ) -> list[CheckMessage]:
            try:
                return check(app_configs, **kwargs)
            except Exception as error:  # a check never raises (STYLE point 8)
                return _problem(
                    "idempotency.E017",
                    f"{subject} could not be checked, reading it raised {_quote(error)}: "
                    "set plain values (str, int, bool, timedelta, list, tuple, dict).",
                    hint="The package reads these values on every request and would fail the same way.",
                )

        return guarded

    return decorate


def _configured() -> Mapping[Any, Any] | None:
    value = getattr(settings, "IDEMPOTENCY", {})
    return value if isinstance(value, Mapping) else None


def _get(name: str) -> Any:
    """The value the accessor would use, or ``_MISSING`` when E001 applies."""
    configured = _configured()
    return _MISSING if configured is None else configured.get(name, DEFAULTS[name])


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_collection(value: object) -> bool:
    return isinstance(value, Collection) and not isinstance(
        value, str | bytes | bytearray | Mapping
    )


def _duration(value: object) -> timedelta | None:
    """``value`` as a usable duration: positive, and a datetime can be that far ahead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        duration = as_timedelta(value)  # type: ignore[arg-type]
        datetime.now(timezone.utc) + duration
    except (OverflowError, ValueError):
        return None
    return duration if duration > timedelta(0) else None


@_guarded("settings.IDEMPOTENCY")
def check_settings_is_a_dict(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    value = getattr(settings, "IDEMPOTENCY", {})
    if isinstance(value, Mapping):
        return []
    return _problem(
        "idempotency.E001",
        f"settings.IDEMPOTENCY is {_quote(value)}: set it to a dict such as "
        '{"REQUIRED": True}, or remove it to use the defaults.',
        hint=f"Every key is optional; {DOCS}.",
    )


@_guarded("settings.IDEMPOTENCY")
def check_unknown_keys(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages = []
    for key in list(_configured() or ()):
        if isinstance(key, str) and key in DEFAULTS:
            continue
        close = (
            difflib.get_close_matches(key.upper(), DEFAULTS, n=1) if isinstance(key, str) else []
        )
        fix = f"did you mean {close[0]!r}?" if close else "remove it."
        messages.append(
            _message(
                "idempotency.E002",
                f"settings.IDEMPOTENCY has an unknown key {_quote(key)}: {fix}",
                hint=f"Known keys: {', '.join(DEFAULTS)}; {DOCS}.",
            )
        )
    return messages


@_guarded('IDEMPOTENCY["HEADER"]')
def check_header(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    header = _get("HEADER")
    if header is _MISSING:
        return []
    if not isinstance(header, str):
        return _problem(
            "idempotency.E003",
            f'IDEMPOTENCY["HEADER"] is {_quote(header)}: set it to a header name such as "Idempotency-Key".',
            hint="The header name is a str; names compare case-insensitively.",
        )
    if not TOKEN.fullmatch(header):
        return _problem(
            "idempotency.E004",
            f'IDEMPOTENCY["HEADER"] is {_quote(header)}, which is not a valid HTTP header name: '
            'use letters, digits and hyphens, such as "Idempotency-Key".',
            hint="A header name is an RFC 9110 token: no spaces, colons or other separators; "
            "no client can send this one.",
        )
    if "_" in header:
        return _problem(
            "idempotency.W006",
            f'IDEMPOTENCY["HEADER"] is {_quote(header)}, whose underscore makes servers drop it: '
            f"use a hyphen instead, such as {header.replace('_', '-')!r}.",
            hint="Django's runserver, gunicorn and nginx drop request headers with underscores "
            "(they would be indistinguishable from hyphenated ones in the WSGI environ).",
        )
    return []


@_guarded('IDEMPOTENCY["REQUIRED"]')
def check_required(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    required = _get("REQUIRED")
    if required is _MISSING or isinstance(required, bool):
        return []
    return _problem(
        "idempotency.E005",
        f'IDEMPOTENCY["REQUIRED"] is {_quote(required)}: set it to True or False.',
        hint='A non-bool would be read by its truth value: the string "False" is true.',
    )


@_guarded('IDEMPOTENCY["TTL"] or IDEMPOTENCY["LOCK_TIMEOUT"]')
def check_durations(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages = []
    for name in ("TTL", "LOCK_TIMEOUT"):
        value = _get(name)
        if value is _MISSING:
            continue
        if not (isinstance(value, timedelta | float) or _is_int(value)):
            messages.append(
                _message(
                    "idempotency.E006",
                    f'IDEMPOTENCY["{name}"] is {_quote(value)}: set it to a number of seconds '
                    "(int or float) or a datetime.timedelta.",
                    hint='Strings and bools are not durations; write 3600, not "3600" or "1h".',
                )
            )
        elif _duration(value) is None:
            messages.append(
                _message(
                    "idempotency.E007",
                    f'IDEMPOTENCY["{name}"] is {_quote(value)}: set a duration above zero '
                    "that ends before the year 9999.",
                    hint="A record that expires, or a lock that ends, as soon as it is written "
                    "cannot protect a retry; the database cannot store a later time.",
                )
            )
    return messages


@_guarded('IDEMPOTENCY["TTL"] or IDEMPOTENCY["LOCK_TIMEOUT"]')
def check_lock_timeout_within_ttl(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    ttl, lock = (_get(name) for name in ("TTL", "LOCK_TIMEOUT"))
    valid = all(isinstance(v, timedelta | float) or _is_int(v) for v in (ttl, lock))
    ttl_duration, lock_duration = (_duration(v) if valid else None for v in (ttl, lock))
    if ttl_duration is None or lock_duration is None or lock_duration <= ttl_duration:
        return []
    return _problem(
        "idempotency.W001",
        f'IDEMPOTENCY["LOCK_TIMEOUT"] is {_quote(lock)}, longer than IDEMPOTENCY["TTL"] '
        f"({_quote(ttl)}): lower LOCK_TIMEOUT or raise TTL.",
        hint="A dead worker's record would expire before its lock does: retries get 409 "
        "for longer than a completed response is replayed. LOCK_TIMEOUT is meant to be "
        "just above your slowest request, TTL hours or days.",
    )


@_guarded('IDEMPOTENCY["KEY_MAX_LENGTH"]')
def check_key_max_length(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    length = _get("KEY_MAX_LENGTH")
    if length is _MISSING:
        return []
    if not _is_int(length) or length < 1:
        return _problem(
            "idempotency.E008",
            f'IDEMPOTENCY["KEY_MAX_LENGTH"] is {_quote(length)}: set it to a positive int '
            f"no larger than {KEY_LENGTH}.",
            hint="It is the longest Idempotency-Key accepted, in characters.",
        )
    if length > KEY_LENGTH:
        return _problem(
            "idempotency.W002",
            f'IDEMPOTENCY["KEY_MAX_LENGTH"] is {length}, longer than the {KEY_LENGTH}-character '
            f"key column: set it to {KEY_LENGTH} or less.",
            hint=f"Keys longer than {KEY_LENGTH} characters are refused with 400 key-invalid "
            "whatever this setting says, since the column cannot hold them.",
        )
    return []


@_guarded('IDEMPOTENCY["REPLAY_HEADERS"]')
def check_replay_headers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    names = _get("REPLAY_HEADERS")
    if names is _MISSING:
        return []
    if not _is_collection(names) or not all(
        isinstance(name, str) and TOKEN.fullmatch(name) for name in names
    ):
        return _problem(
            "idempotency.E009",
            f'IDEMPOTENCY["REPLAY_HEADERS"] is {_quote(names)}: set it to a tuple of header '
            'names, such as ("X-Request-Cost",).',
            hint='A single name needs a trailing comma, ("X-Request-Cost",): a bare str is '
            "not a tuple of names.",
        )
    return [
        _message(
            "idempotency.W005",
            f'IDEMPOTENCY["REPLAY_HEADERS"] lists {_quote(name)}, a credential header that is '
            "never stored: remove it.",
            hint=f"{', '.join(sorted(NEVER_STORED_HEADERS))} are never stored or replayed, so "
            "that a replay cannot hand one client's credentials to another; listing one has no effect.",
        )
        for name in names
        if name.lower() in NEVER_STORED_HEADERS
    ]


@_guarded('IDEMPOTENCY["RELEASE_STATUSES"]')
def check_release_statuses(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    statuses = _get("RELEASE_STATUSES")
    if statuses is _MISSING:
        return []
    if _is_collection(statuses) and all(_is_int(s) and 100 <= s <= 599 for s in statuses):
        return []
    return _problem(
        "idempotency.E010",
        f'IDEMPOTENCY["RELEASE_STATUSES"] is {_quote(statuses)}: set it to a tuple of HTTP '
        "statuses (ints from 100 to 599), such as (408, 409, 425, 429).",
        hint="The value replaces the default: keep the default statuses you still want. "
        "Every 5xx is released anyway.",
    )


@_guarded('IDEMPOTENCY["MAX_STORED_RESPONSE_BYTES"]')
def check_max_stored_response_bytes(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    limit = _get("MAX_STORED_RESPONSE_BYTES")
    if limit is _MISSING or (_is_int(limit) and limit >= 0):
        return []
    return _problem(
        "idempotency.E011",
        f'IDEMPOTENCY["MAX_STORED_RESPONSE_BYTES"] is {_quote(limit)}: set it to a number of '
        "bytes (an int, 0 or more), such as 1024 * 1024.",
        hint="A response whose body is larger is passed through but not stored.",
    )


@_guarded('IDEMPOTENCY["DATABASE"]')
def check_database(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    alias = _get("DATABASE")
    if alias is _MISSING:
        return []
    if not isinstance(alias, str):
        return _problem(
            "idempotency.E012",
            f'IDEMPOTENCY["DATABASE"] is {_quote(alias)}: set it to a database alias such as "default".',
            hint="The alias is a key of settings.DATABASES, a str.",
        )
    databases = getattr(settings, "DATABASES", {})
    if isinstance(databases, Mapping) and alias in databases:
        return []
    known = ", ".join(map(_quote, databases)) if isinstance(databases, Mapping) else "none"
    return _problem(
        "idempotency.E013",
        f'IDEMPOTENCY["DATABASE"] is {_quote(alias)}, which is not in settings.DATABASES: '
        f"set it to one of its aliases ({known}).",
        hint="Records live in this database, the one your views write to; run the "
        "idempotency migrations there.",
    )


@_guarded('IDEMPOTENCY["SCOPE"] or IDEMPOTENCY["FINGERPRINT"]')
def check_hooks(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages = []
    for name in ("SCOPE", "FINGERPRINT"):
        hook = _get(name)
        if hook is _MISSING or callable(hook):
            continue
        default = DEFAULTS[name]
        if not isinstance(hook, str):
            messages.append(
                _message(
                    "idempotency.E014",
                    f'IDEMPOTENCY["{name}"] is {_quote(hook)}: set it to a function '
                    f'(request) -> str or its dotted path, such as "{default}".',
                    hint="The function receives the request and returns a str.",
                )
            )
            continue
        try:
            target = import_string(hook)
        except Exception as error:  # ImportError, or anything the module raises
            messages.append(
                _message(
                    "idempotency.E015",
                    f'IDEMPOTENCY["{name}"] is {_quote(hook)}, which does not import ({_quote(error)}): '
                    f'fix the dotted path, such as "{default}".',
                    hint="The path is module.attribute, importable from the project "
                    '(python -c "import module" shows why it fails).',
                )
            )
            continue
        if not callable(target):
            messages.append(
                _message(
                    "idempotency.E016",
                    f'IDEMPOTENCY["{name}"] is {_quote(hook)}, which imports {_quote(target)}, '
                    "not a function: point it at a function (request) -> str.",
                    hint="The path must name the function itself, not its module or a value.",
                )
            )
    return messages


def _cors_lists(setting: str, header: str, default: object) -> bool:
    """Whether a corsheaders list setting covers ``header``; unreadable counts as yes.

    corsheaders' own checks report malformed values; a ``*`` is a wildcard only
    without credentials (Fetch standard, CORS protocol).
    """
    names: Any = getattr(settings, setting, default)
    if not _is_collection(names) or not all(isinstance(name, str) for name in names):
        return True
    lowered = {name.lower() for name in names}
    wildcard = "*" in lowered and not getattr(settings, "CORS_ALLOW_CREDENTIALS", False)
    return header.lower() in lowered or wildcard


@_guarded("CORS_ALLOW_HEADERS")
def check_cors_allow_headers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    header = _get("HEADER")
    if not apps.is_installed("corsheaders") or not isinstance(header, str):
        return []
    default = import_string("corsheaders.defaults.default_headers")
    if _cors_lists("CORS_ALLOW_HEADERS", header, default):
        return []
    current = getattr(settings, "CORS_ALLOW_HEADERS", default)
    return _problem(
        "idempotency.W003",
        f"CORS_ALLOW_HEADERS is {_quote(current)}, without {header!r}: add it, such as "
        f"CORS_ALLOW_HEADERS = (*default_headers, {header.lower()!r}).",
        hint="Browsers send a cross-origin request with a custom header only after a "
        "preflight allows it, so browser clients could not send idempotency keys "
        "(default_headers is in corsheaders.defaults).",
    )


@_guarded("CORS_EXPOSE_HEADERS")
def check_cors_expose_headers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not apps.is_installed("corsheaders") or _cors_lists(
        "CORS_EXPOSE_HEADERS", REPLAYED_HEADER, ()
    ):
        return []
    current = getattr(settings, "CORS_EXPOSE_HEADERS", ())
    return _problem(
        "idempotency.W004",
        f"CORS_EXPOSE_HEADERS is {_quote(current)}, without {REPLAYED_HEADER!r}: add it, "
        f"such as CORS_EXPOSE_HEADERS = ({REPLAYED_HEADER.lower()!r},).",
        hint="Browsers hide response headers from cross-origin scripts unless they are "
        "exposed, so browser clients could not tell a replay from a first execution.",
    )


# Registered in IdempotencyConfig.ready(), under the tag "idempotency".
CHECKS: tuple[Check, ...] = (
    check_settings_is_a_dict,
    check_unknown_keys,
    check_header,
    check_required,
    check_durations,
    check_lock_timeout_within_ttl,
    check_key_max_length,
    check_replay_headers,
    check_release_statuses,
    check_max_stored_response_bytes,
    check_database,
    check_hooks,
    check_cors_allow_headers,
    check_cors_expose_headers,
)
