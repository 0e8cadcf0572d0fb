"""The admin of idempotency records (``django.contrib.admin`` autodiscovers this package).

One idea per module: ``record_admin`` (the ModelAdmin: list, search, detail
page), ``release`` (removing records), ``removal`` (its one SQL statement),
``pagination`` (bounded counts), ``filters``, ``search`` and ``bodies`` (a
stored response as text).
"""

from __future__ import annotations

from idempotency.admin.record_admin import IdempotencyRecordAdmin

__all__ = ["IdempotencyRecordAdmin"]
