"""Settings that are each valid but disagree with each other."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage

from idempotency.checks.messages import guarded, message, setting
from idempotency.checks.rules import valid
from idempotency.conf import as_timedelta
from idempotency.validation import quote


@guarded('IDEMPOTENCY["TTL"] or IDEMPOTENCY["LOCK_TIMEOUT"]')
def check_lock_timeout_within_ttl(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not (valid("TTL") and valid("LOCK_TIMEOUT")):
        return []
    ttl, lock = setting("TTL"), setting("LOCK_TIMEOUT")
    if as_timedelta(lock) <= as_timedelta(ttl):
        return []
    return [
        message(
            "idempotency.W001",
            f'IDEMPOTENCY["LOCK_TIMEOUT"] is {quote(lock)}, longer than IDEMPOTENCY["TTL"] '
            f"({quote(ttl)}): lower LOCK_TIMEOUT or raise TTL.",
            hint="A dead worker's record would expire before its lock does: retries get 409 "
            "for longer than a completed response is replayed. LOCK_TIMEOUT is meant to be "
            "just above your slowest request, TTL hours or days.",
        )
    ]


CHECKS = (check_lock_timeout_within_ttl,)
