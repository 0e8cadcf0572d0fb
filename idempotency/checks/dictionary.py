"""``settings.IDEMPOTENCY`` itself: a dict of known keys."""

from __future__ import annotations

import difflib
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage

from idempotency.checks.messages import DOCS, configured, guarded, message
from idempotency.conf import DEFAULTS
from idempotency.validation import quote


@guarded("settings.IDEMPOTENCY")
def check_settings_is_a_dict(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if configured() is not None:
        return []
    return [
        message(
            "idempotency.E001",
            f"settings.IDEMPOTENCY is {quote(settings.IDEMPOTENCY)}: set it to a dict such as "
            '{"REQUIRED": True}, or remove it to use the defaults.',
            hint=f"Every key is optional; {DOCS}.",
        )
    ]


@guarded("settings.IDEMPOTENCY")
def check_unknown_keys(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages = []
    for key in list(configured() or ()):
        if isinstance(key, str) and key in DEFAULTS:
            continue
        close = (
            difflib.get_close_matches(key.upper(), DEFAULTS, n=1) if isinstance(key, str) else []
        )
        fix = f"did you mean {close[0]!r}?" if close else "remove it."
        messages.append(
            message(
                "idempotency.E002",
                f"settings.IDEMPOTENCY has an unknown key {quote(key)}: {fix}",
                hint=f"Known keys: {', '.join(DEFAULTS)}; {DOCS}.",
            )
        )
    return messages


CHECKS = (check_settings_is_a_dict, check_unknown_keys)
