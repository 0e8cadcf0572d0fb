"""Celery: a lock shorter than a task may run lets a redelivered copy take over a live task."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from django.core.checks import CheckMessage

from idempotency.checks.messages import guarded, message, setting
from idempotency.checks.rules import valid
from idempotency.conf import as_timedelta
from idempotency.functions import OPTIONS_ATTRIBUTE


def _limits(app: Any) -> Iterator[tuple[str, float]]:
    """Each configured duration a protected task may legitimately outlive its lock by."""
    conf = app.conf
    for name in ("task_time_limit", "task_soft_time_limit"):
        if conf.get(name):
            yield f"Celery's {name}", float(conf.get(name))
    options = conf.get("broker_transport_options") or {}
    if options.get("visibility_timeout"):
        yield (
            "Celery's broker_transport_options['visibility_timeout']",
            float(options["visibility_timeout"]),
        )
    for name, task in sorted(app.tasks.items()):
        if getattr(getattr(task, "run", None), OPTIONS_ATTRIBUTE, None) is None:
            continue
        for attribute in ("time_limit", "soft_time_limit"):
            # A task without its own limit inherits the app's, reported above.
            own = getattr(task, attribute, None)
            if own and own != conf.get(f"task_{attribute}"):
                yield f"the {attribute} of task {name!r}", float(getattr(task, attribute))


@guarded('IDEMPOTENCY["LOCK_TIMEOUT"] against Celery')
def check_celery_lock_timeout(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    # Only when the project has imported Celery (its app module usually is, from
    # the project's __init__): the check never imports it.
    celery = sys.modules.get("celery")
    if celery is None or not valid("LOCK_TIMEOUT"):
        return []
    lock = as_timedelta(setting("LOCK_TIMEOUT")).total_seconds()
    return [
        message(
            "idempotency.W009",
            f'IDEMPOTENCY["LOCK_TIMEOUT"] is {lock:g} seconds, shorter than {what} ({seconds:g} '
            "seconds): raise LOCK_TIMEOUT above it.",
            hint="A task may run that long, and a broker redelivers an unacknowledged message "
            "(acks_late, a visibility timeout); a copy that finds the lock expired takes the "
            "record over while the first run is still working, so the task runs twice.",
        )
        for what, seconds in _limits(celery.current_app)
        if seconds > lock
    ]


CHECKS = (check_celery_lock_timeout,)
