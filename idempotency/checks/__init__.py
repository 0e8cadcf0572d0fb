"""System checks (``manage.py check``) for ``settings.IDEMPOTENCY`` and its neighbours.

``rules`` holds one check per setting, built from a table of rules shared with
the decorator (``idempotency.validation``); the other modules check how the
settings meet each other and the rest of the project: ``relations``,
``database``, ``redis``, ``cors``, ``celery``, ``views`` the options of the URLconf's views, and ``versioned`` the admins and
serializers that edit a ``VersionedModel``. ``LEDGER`` lists every id (``ledger``);
docs/checks.md has one heading per id. A check never raises: ``guarded``
turns any surprise into idempotency.E017.
"""

from __future__ import annotations

from idempotency.checks import (
    celery,
    cors,
    database,
    dictionary,
    redis,
    relations,
    rules,
    versioned,
    views,
)
from idempotency.checks.ledger import LEDGER, RETIRED
from idempotency.checks.messages import Check

# Registered in IdempotencyConfig.ready(), under the tag "idempotency".
CHECKS: tuple[Check, ...] = (
    *dictionary.CHECKS,
    *rules.CHECKS,
    *relations.CHECKS,
    *database.CHECKS,
    *redis.CHECKS,
    *cors.CHECKS,
    *views.CHECKS,
    *celery.CHECKS,
    *versioned.CHECKS,
)

__all__ = ["CHECKS", "LEDGER", "RETIRED"]
