"""Every check id with its one-line meaning.

``E`` when the package cannot work, ``W`` when it works but looks wrong.
docs/checks.md has one heading per id, retired ones included. An id names one
problem forever: a retired id moves to ``RETIRED`` and is never reused, so the
next new id is the next number after the highest ever given.
"""

from __future__ import annotations

from collections.abc import Mapping

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
    "idempotency.E018": "HEADER names a credential header",
    "idempotency.E019": "SCOPE or FINGERPRINT is a function that cannot take the request alone",
    "idempotency.E020": "ANONYMOUS is not 'share', 'session' or 'refuse'",
    "idempotency.E021": "IN_PROGRESS_WAIT is not a number of seconds or a timedelta",
    "idempotency.E022": "IN_PROGRESS_WAIT is negative or longer than the longest wait",
    "idempotency.E023": "STORE is not 'database' or 'redis'",
    "idempotency.E024": "REDIS_URL is not a redis://, rediss:// or unix:// URL",
    "idempotency.E025": "REDIS_CLUSTER is not a bool",
    "idempotency.E026": "REDIS_PREFIX is not a non-empty str without white space",
    "idempotency.E027": "STORE is 'redis' but REDIS_URL is not set",
    "idempotency.E028": "STORE is 'redis' but the redis package does not import",
    "idempotency.E029": "DATABASE is a database the record store does not support",
    "idempotency.E030": "a view's scope= is a dotted path that does not import or names no function",
    "idempotency.E031": "redis-py refuses REDIS_URL (an unknown query option, a value it cannot read)",
    "idempotency.E032": "REDIS_CLUSTER does not match the Redis at REDIS_URL (INFO cluster)",
    "idempotency.E033": "a VersionedModel is edited in the admin without its version (a plain ModelAdmin or inline)",
    "idempotency.E034": "a ModelSerializer of a VersionedModel carries the version without VersionField",
    "idempotency.W001": "LOCK_TIMEOUT is longer than TTL",
    "idempotency.W003": "django-cors-headers does not allow the HEADER request header",
    "idempotency.W004": "django-cors-headers does not expose Idempotent-Replayed",
    "idempotency.W005": "REPLAY_HEADERS lists a credential header, which is never stored",
    "idempotency.W006": "HEADER contains an underscore, which servers drop",
    "idempotency.W007": "USE_TZ is off with a MariaDB/MySQL or SQLite DATABASE",
    "idempotency.W008": "the Redis at REDIS_URL may evict records (maxmemory-policy)",
    "idempotency.W009": "LOCK_TIMEOUT is shorter than a Celery time limit or visibility_timeout",
    "idempotency.W010": "RELEASE_STATUSES lists a success (2xx) status",
    "idempotency.W011": "the Redis at REDIS_URL did not answer the checks in time",
}
RETIRED: frozenset[str] = frozenset(
    {
        # "KEY_MAX_LENGTH is longer than the key column": keys are stored as
        # fixed-length digests since 0.2, so no length is too long for the column.
        "idempotency.W002",
    }
)
