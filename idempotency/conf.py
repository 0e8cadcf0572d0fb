"""Settings: one dict, ``settings.IDEMPOTENCY``, read on every access.

Nothing is cached here, so ``override_settings(IDEMPOTENCY=...)`` works without
plumbing. docs/settings.md mirrors ``DEFAULTS`` key for key. The system checks
validate the values; the accessors trust them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils.module_loading import import_string

DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "HEADER": "Idempotency-Key",
        "REQUIRED": False,
        "TTL": timedelta(hours=24),
        "LOCK_TIMEOUT": timedelta(seconds=60),
        "KEY_MAX_LENGTH": 255,
        "SCOPE": "idempotency.scope.default_scope",
        "REPLAY_HEADERS": (),
        "RELEASE_STATUSES": (401, 403, 408, 409, 425, 429),
        "FINGERPRINT": "idempotency.fingerprint.request_fingerprint",
        "MAX_STORED_RESPONSE_BYTES": 1024 * 1024,
        "DATABASE": "default",
        "ANONYMOUS": "share",
        "IN_PROGRESS_WAIT": 0,
        "STORE": "database",
        "REDIS_URL": None,
        "REDIS_CLUSTER": False,
        "REDIS_PREFIX": "idempotency:",
    }
)

ANONYMOUS_POLICIES = ("share", "session", "refuse")
STORES = ("database", "redis")

RequestFunction = Callable[[HttpRequest], str]

_imported: dict[str, Any] = {}


def as_timedelta(value: timedelta | float) -> timedelta:
    """Durations may be given as a ``timedelta`` or as seconds."""
    if isinstance(value, timedelta):
        return value
    return timedelta(seconds=value)


def as_callable(value: str | RequestFunction) -> RequestFunction:
    """Hooks may be given as a callable or as its dotted path.

    A dotted path is imported once per process: ``import_string`` on every
    request would cost more than the rest of the settings together.
    """
    if not isinstance(value, str):
        return value
    function = _imported.get(value)
    if function is None:
        function = _imported[value] = import_string(value)
    return function  # type: ignore[no-any-return]


# Django's LazySettings keeps each setting it has resolved in its instance
# dict, and empties that dict whenever the settings change (override_settings,
# assignment, deletion), so ``settings.NAME`` finds it there first. Reading the
# dict directly returns the same value without the lazy object's Python-level
# ``__getattribute__``; a name not resolved yet goes through ``settings``.
_resolved: dict[str, Any] = object.__getattribute__(settings, "__dict__")
_MISSING = object()


def setting(name: str, default: Any = None) -> Any:
    """``getattr(settings, name, default)``, read on every call, cheaply."""
    value = _resolved.get(name, _MISSING)
    if value is _MISSING:
        value = getattr(settings, name, default)
    return value


class IdempotencySettings:
    def _get(self, name: str) -> Any:
        configured: Mapping[str, Any] = setting("IDEMPOTENCY", DEFAULTS)
        return configured.get(name, DEFAULTS[name])

    @property
    def HEADER(self) -> str:
        header: str = self._get("HEADER")
        return header

    @property
    def REQUIRED(self) -> bool:
        return bool(self._get("REQUIRED"))

    @property
    def TTL(self) -> timedelta:
        return as_timedelta(self._get("TTL"))

    @property
    def LOCK_TIMEOUT(self) -> timedelta:
        return as_timedelta(self._get("LOCK_TIMEOUT"))

    @property
    def KEY_MAX_LENGTH(self) -> int:
        return int(self._get("KEY_MAX_LENGTH"))

    @property
    def SCOPE(self) -> RequestFunction:
        return as_callable(self._get("SCOPE"))

    @property
    def REPLAY_HEADERS(self) -> tuple[str, ...]:
        return tuple(self._get("REPLAY_HEADERS"))

    @property
    def RELEASE_STATUSES(self) -> frozenset[int]:
        return frozenset(self._get("RELEASE_STATUSES"))

    @property
    def FINGERPRINT(self) -> RequestFunction:
        return as_callable(self._get("FINGERPRINT"))

    @property
    def MAX_STORED_RESPONSE_BYTES(self) -> int:
        return int(self._get("MAX_STORED_RESPONSE_BYTES"))

    @property
    def DATABASE(self) -> str:
        alias: str = self._get("DATABASE")
        return alias

    @property
    def ANONYMOUS(self) -> str:
        policy: str = self._get("ANONYMOUS")
        return policy

    @property
    def IN_PROGRESS_WAIT(self) -> timedelta:
        return as_timedelta(self._get("IN_PROGRESS_WAIT"))

    @property
    def STORE(self) -> str:
        store: str = self._get("STORE")
        return store

    @property
    def REDIS_URL(self) -> str | None:
        url: str | None = self._get("REDIS_URL")
        return url

    @property
    def REDIS_CLUSTER(self) -> bool:
        return bool(self._get("REDIS_CLUSTER"))

    @property
    def REDIS_PREFIX(self) -> str:
        prefix: str = self._get("REDIS_PREFIX")
        return prefix


idempotency_settings = IdempotencySettings()
