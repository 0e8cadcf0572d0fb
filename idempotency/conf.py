"""Settings: one dict, ``settings.IDEMPOTENCY``, read on every access.

Nothing is cached, so ``override_settings(IDEMPOTENCY=...)`` works without
plumbing. docs/settings.md mirrors ``DEFAULTS`` key for key.
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
        "SCOPE": "idempotency.scope.user_scope",
        "REPLAY_HEADERS": (),
        "RELEASE_STATUSES": (408, 409, 425, 429),
        "FINGERPRINT": "idempotency.fingerprint.request_fingerprint",
        "MAX_STORED_RESPONSE_BYTES": 1024 * 1024,
        "DATABASE": "default",
    }
)

RequestFunction = Callable[[HttpRequest], str]


def as_timedelta(value: timedelta | float) -> timedelta:
    """Durations may be given as a ``timedelta`` or as seconds."""
    if isinstance(value, timedelta):
        return value
    return timedelta(seconds=value)


def as_callable(value: str | RequestFunction) -> RequestFunction:
    """Hooks may be given as a callable or as its dotted path."""
    if isinstance(value, str):
        function: RequestFunction = import_string(value)
        return function
    return value


class IdempotencySettings:
    def _get(self, name: str) -> Any:
        return getattr(settings, "IDEMPOTENCY", {}).get(name, DEFAULTS[name])

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


idempotency_settings = IdempotencySettings()
