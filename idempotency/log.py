"""The ``idempotency`` logger, with the scope and the shown key in every message.

Keys are bearer secrets (in the shared ``anonymous`` scope, the only one), so
a log line carries ``keys.shown(digest)``, the first characters of the key's
keyed digest: an operator can match it with the admin, nobody can replay it.
Scopes are printable by construction (``scope.scope_problem``), so neither can
forge a field of the log line. Never a body, never another header.
(``idempotency.turns`` logs one line of its own, naming no request: an async
request waiting for its turn on a shared worker thread, before its key is read.)
"""

from __future__ import annotations

import logging

from idempotency.keys import shown
from idempotency.stores import Attempt

logger = logging.getLogger("idempotency")


def log(level: int, message: str, attempt: Attempt, *args: object, exc_info: object = None) -> None:
    """Log ``message % args`` followed by `` scope=... key=...``."""
    if logger.isEnabledFor(level):
        logger.log(
            level,
            message + " scope=%s key=%s",
            *args,
            attempt.scope,
            shown(attempt.key),
            exc_info=exc_info,  # type: ignore[arg-type]
        )
