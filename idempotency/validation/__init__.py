"""The rules a setting or a per-view option must follow, written once.

The system checks turn a broken rule into a check message (``idempotency.checks``
maps each rule to its id); the decorator, the mixin and ``idempotent_function``
raise it at decoration or class creation. Each function ``rule(name, value)``
returns ``None`` when the value is fine, or an ``Invalid`` whose message names
the value and says what to write instead. A rule judges its own concern and
lets anything else pass (``key_header`` says nothing about a value that is not
a str: that is ``header``'s), so rules chain in order, first failure wins.
"""

from __future__ import annotations

from idempotency.validation.headers import (
    CREDENTIAL_HEADERS,
    TOKEN,
    header,
    header_names,
    key_header,
    not_listed,
    portable_header,
)
from idempotency.validation.hooks import hook, hook_target
from idempotency.validation.invalid import Invalid, is_collection, is_int, quote
from idempotency.validation.redis import REDIS_SCHEMES, redis_prefix, redis_url
from idempotency.validation.values import (
    MAX_WAIT,
    SAFE_METHODS,
    UNSAFE_METHODS,
    anonymous_policy,
    boolean,
    byte_count,
    database_alias,
    duration,
    http_statuses,
    methods,
    no_success_statuses,
    positive_int,
    store,
    wait,
)

__all__ = [
    "CREDENTIAL_HEADERS",
    "MAX_WAIT",
    "REDIS_SCHEMES",
    "SAFE_METHODS",
    "TOKEN",
    "UNSAFE_METHODS",
    "Invalid",
    "anonymous_policy",
    "boolean",
    "byte_count",
    "database_alias",
    "duration",
    "header",
    "header_names",
    "hook",
    "hook_target",
    "http_statuses",
    "is_collection",
    "is_int",
    "key_header",
    "methods",
    "no_success_statuses",
    "not_listed",
    "portable_header",
    "positive_int",
    "quote",
    "redis_prefix",
    "redis_url",
    "store",
    "wait",
]
