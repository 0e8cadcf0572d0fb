"""The database that holds the records: it exists, the store speaks its SQL, times read right.

The backend is read from settings.DATABASES, as ``connections[alias]`` would
build it, without connecting: a check must not need the database up.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage
from django.db.utils import load_backend

from idempotency.checks.messages import guarded, message, setting
from idempotency.checks.redis import uses_redis
from idempotency.checks.rules import valid
from idempotency.stores.dialects import DIALECTS
from idempotency.validation import quote

NAMES = {"postgresql": "PostgreSQL", "mysql": "MariaDB/MySQL", "sqlite": "SQLite"}


def _configuration() -> tuple[str, Mapping[str, Any]] | None:
    """The alias and its settings.DATABASES entry, when DATABASE names one."""
    alias = setting("DATABASE")
    databases = getattr(settings, "DATABASES", {})
    if not valid("DATABASE") or not isinstance(databases, Mapping) or alias not in databases:
        return None
    entry = databases[alias]
    return (alias, entry) if isinstance(entry, Mapping) else None


def _vendor(entry: Mapping[str, Any]) -> str | None:
    """``connections[alias].vendor``: a class attribute of the backend's wrapper."""
    engine = entry.get("ENGINE") or "django.db.backends.dummy"  # as ConnectionHandler does
    try:
        backend = load_backend(
            "django.db.backends.dummy" if engine == "django.db.backends." else engine
        )
    except Exception:
        return None  # an ENGINE that does not load: Django itself fails on it, on first use
    vendor = getattr(backend.DatabaseWrapper, "vendor", None)
    return vendor if isinstance(vendor, str) else None


@guarded('IDEMPOTENCY["DATABASE"]')
def check_database_alias(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    alias = setting("DATABASE")
    databases = getattr(settings, "DATABASES", {})
    if not valid("DATABASE") or (isinstance(databases, Mapping) and alias in databases):
        return []
    known = ", ".join(map(quote, databases)) if isinstance(databases, Mapping) else "none"
    return [
        message(
            "idempotency.E013",
            f'IDEMPOTENCY["DATABASE"] is {quote(alias)}, which is not in settings.DATABASES: '
            f"set it to one of its aliases ({known}).",
            hint="Records live in this database, the one your views write to; run the "
            "idempotency migrations there.",
        )
    ]


@guarded('IDEMPOTENCY["DATABASE"]')
def check_database_backend(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    found = None if uses_redis() else _configuration()
    vendor = None if found is None else _vendor(found[1])
    if found is None or vendor is None or vendor in DIALECTS:
        return []
    alias, entry = found
    return [
        message(
            "idempotency.E029",
            f'IDEMPOTENCY["DATABASE"] is {quote(alias)}, whose backend {quote(entry.get("ENGINE"))} '
            f"(vendor {vendor!r}) the record store does not support: point it at a PostgreSQL, "
            "MariaDB/MySQL or SQLite database.",
            hint="The store's claim and expiry SQL exists for those three backends only; "
            "on any other every idempotent request fails.",
        )
    ]


@guarded("USE_TZ")
def check_time_zone(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    found = None if uses_redis() or settings.USE_TZ else _configuration()
    vendor = None if found is None else _vendor(found[1])
    # PostgreSQL stores an instant (timestamptz) and converts it for the
    # session, so it reads right with USE_TZ off too.
    if found is None or vendor not in ("mysql", "sqlite") or _is_utc(settings.TIME_ZONE):
        return []
    return [
        message(
            "idempotency.W007",
            f'USE_TZ is False while IDEMPOTENCY["DATABASE"] ({quote(found[0])}) is a '
            f'{NAMES[vendor]} database: set USE_TZ = True, or TIME_ZONE = "UTC".',
            hint=f"The store writes record times in UTC, by the database's clock; with USE_TZ "
            f"off Django reads them as {quote(settings.TIME_ZONE)} local time, so the admin "
            "and the ORM show created_at, expires_at and locked_until shifted (expiry and "
            "locks still work: they are compared in SQL).",
        )
    ]


def _is_utc(name: object) -> bool:
    """Whether the zone ``name`` is UTC all year, so naive UTC times read right."""
    if not isinstance(name, str):
        return False  # None: the system's local time, whatever it is
    try:
        zone = zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    year = datetime.now().year
    return all(zone.utcoffset(datetime(year, month, 1)) == timedelta(0) for month in (1, 7))


CHECKS = (check_database_alias, check_database_backend, check_time_zone)
