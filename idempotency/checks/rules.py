"""The settings, one rule at a time: setting -> rule (idempotency.validation) -> check id.

Each setting gets one check, which runs the rows that name it in order and
reports the first broken rule; a rule's ``Invalid.error`` picks the id, so the
decorator (which raises the same ``Invalid``) and ``manage.py check`` agree.
The message is the rule's; the hint, why it matters, is the row's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.core.checks import CheckMessage

from idempotency import validation
from idempotency.checks.messages import MISSING, Check, guarded, label, message, setting
from idempotency.conf import DEFAULTS
from idempotency.responses import NEVER_STORED_HEADERS
from idempotency.validation import Invalid


@dataclass(frozen=True)
class Outcome:
    id: str
    hint: str


@dataclass(frozen=True)
class Rule:
    settings: tuple[str, ...]
    rule: Callable[[str, Any], Invalid | None]
    outcomes: Mapping[type[Exception], Outcome]

    def outcome(self, problem: Invalid) -> Outcome:
        return self.outcomes[problem.error]  # a missing entry is a bug: E017 shows it


# One outcome reached from two rows: a callable setting and a dotted path's target.
CANNOT_TAKE_THE_REQUEST = Outcome(
    "idempotency.E019",
    "The package calls it with the request alone on every request; any other signature "
    "fails there with a TypeError (a 500).",
)
DURATION_TYPE = "Durations are read as seconds or as a timedelta; a string is never parsed."

RULES: tuple[Rule, ...] = (
    Rule(("HEADER",), validation.header, {
        TypeError: Outcome("idempotency.E003", "The header name is a str; names compare case-insensitively."),
        ValueError: Outcome("idempotency.E004", "A header name is an RFC 9110 token: no spaces, colons or other separators; no client can send this one."),
    }),
    Rule(("HEADER",), validation.key_header, {
        ValueError: Outcome("idempotency.E018", "A key is stored, compared across retries and shown in part in logs; a credential there would be all three, and every caller holding it would share one set of records."),
    }),
    Rule(("HEADER",), validation.portable_header, {
        ValueError: Outcome("idempotency.W006", "Django reads a header name's underscores as hyphens (request.headers); Django's runserver, gunicorn and nginx drop request headers sent with underscores (they would be indistinguishable from hyphenated ones in the WSGI environ)."),
    }),
    Rule(("REQUIRED",), validation.boolean, {
        TypeError: Outcome("idempotency.E005", 'The setting is read by its truth value, so "no" or "0" would require keys.'),
    }),
    Rule(("TTL", "LOCK_TIMEOUT"), validation.duration, {
        TypeError: Outcome("idempotency.E006", DURATION_TYPE),
        ValueError: Outcome("idempotency.E007", "A record that expires, or a lock that ends, as soon as it is written cannot protect a retry; the database cannot store a later time."),
    }),
    Rule(("KEY_MAX_LENGTH",), validation.positive_int, {
        TypeError: Outcome("idempotency.E008", "It is the longest key accepted, in characters; keys are stored as digests, so any length fits."),
    }),
    Rule(("SCOPE", "FINGERPRINT"), validation.hook, {
        TypeError: Outcome("idempotency.E014", "The function receives the request and returns a str."),
        ValueError: CANNOT_TAKE_THE_REQUEST,
    }),
    Rule(("SCOPE", "FINGERPRINT"), validation.hook_target, {
        ImportError: Outcome("idempotency.E015", 'The path is module.attribute, importable from the project (python -c "import module" shows why it fails).'),
        TypeError: Outcome("idempotency.E016", "The path must name the function itself, not its module or a value."),
        ValueError: CANNOT_TAKE_THE_REQUEST,
    }),
    Rule(("REPLAY_HEADERS",), validation.header_names, {
        TypeError: Outcome("idempotency.E009", "They are the response headers replayed besides the built-in allow-list; names compare case-insensitively."),
    }),
    Rule(("REPLAY_HEADERS",), partial(validation.not_listed, forbidden=NEVER_STORED_HEADERS, kind="credential header", why="never stored"), {
        ValueError: Outcome("idempotency.W005", f"{', '.join(sorted(NEVER_STORED_HEADERS))} are never stored or replayed, so that a replay cannot hand one client's credentials to another; listing one has no effect."),
    }),
    Rule(("RELEASE_STATUSES",), validation.http_statuses, {
        TypeError: Outcome("idempotency.E010", "The value replaces the default: keep the default statuses you still want. Every 5xx is released anyway."),
    }),
    Rule(("RELEASE_STATUSES",), validation.no_success_statuses, {
        ValueError: Outcome("idempotency.W010", "A released status leaves the key free for a retry, which runs the view again: right for a refusal (401, 429), a double execution for a success."),
    }),
    Rule(("MAX_STORED_RESPONSE_BYTES",), validation.byte_count, {
        TypeError: Outcome("idempotency.E011", "A response whose body is larger is passed through but not stored."),
    }),
    Rule(("DATABASE",), validation.database_alias, {
        TypeError: Outcome("idempotency.E012", "The alias is a key of settings.DATABASES, a str."),
    }),
    Rule(("ANONYMOUS",), validation.anonymous_policy, {
        ValueError: Outcome("idempotency.E020", 'For callers with no principal: "share" one scope, scope by "session", or "refuse" their keys with 400.'),
    }),
    Rule(("IN_PROGRESS_WAIT",), validation.wait, {
        TypeError: Outcome("idempotency.E021", DURATION_TYPE),
        ValueError: Outcome("idempotency.E022", f"0 answers a duplicate 409 at once; a wait holds the duplicate's worker, so it is at most {int(validation.MAX_WAIT.total_seconds())} seconds."),
    }),
    Rule(("STORE",), validation.store, {
        ValueError: Outcome("idempotency.E023", '"database" keeps records in the IdempotencyRecord table, "redis" in the Redis at REDIS_URL.'),
    }),
    Rule(("REDIS_URL",), validation.redis_url, {
        ValueError: Outcome("idempotency.E024", "The URL redis-py's from_url() reads; the checks parse it and never connect."),
    }),
    Rule(("REDIS_CLUSTER",), validation.boolean, {
        TypeError: Outcome("idempotency.E025", "True when REDIS_URL names one node of a Redis Cluster."),
    }),
    Rule(("REDIS_PREFIX",), validation.redis_prefix, {
        ValueError: Outcome("idempotency.E026", "Every Redis key the package writes starts with it; keep it distinct from your other keys."),
    }),
)  # fmt: skip


def first_problem(name: str, value: object) -> tuple[Rule, Invalid] | None:
    """The first row that ``value`` breaks as the setting ``name``, or ``None``."""
    for row in RULES:
        if name in row.settings:
            problem = row.rule(label(name), value)
            if problem is not None:
                return row, problem
    return None


def valid(name: str) -> bool:
    """Whether the configured value of ``name`` breaks no rule (checks of relations use it)."""
    value = setting(name)
    return value is not MISSING and first_problem(name, value) is None


def _setting_check(name: str) -> Check:
    def check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
        value = setting(name)
        found = None if value is MISSING else first_problem(name, value)
        if found is None:
            return []
        row, problem = found
        outcome = row.outcome(problem)
        return [message(outcome.id, problem.message, outcome.hint)]

    check.__name__ = check.__qualname__ = f"check_{name.lower()}"
    return guarded(label(name))(check)


CHECKS: tuple[Check, ...] = tuple(_setting_check(name) for name in DEFAULTS)
