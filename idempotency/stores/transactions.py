"""The call's transactions as every store sees them: its own atomic block,
and the enclosing ones on any database that commit after the call returns.

Shared by the database store and the Redis store, which differ in where the
record lives, not in when an outcome may be kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import connections, transaction

# Django's refusal of a durable block opened inside another atomic block
# (django/db/transaction.py, Atomic.__enter__).
DURABLE_REFUSED = "A durable atomic block cannot be nested within another atomic block."


class RolledBack(Exception):
    """Passed to ``Atomic.__exit__`` to make it roll back."""


def leave(atomic: Any, rollback: bool = False) -> None:
    """Leave a store's own atomic block, committing unless ``rollback``.

    A failing commit raises Django's own error: each store says what it means.
    """
    if rollback:
        atomic.__exit__(RolledBack, RolledBack(), None)
    else:
        atomic.__exit__(None, None, None)


def after_commits(aliases: list[str], then: Callable[[], None]) -> None:
    """Run ``then`` once the enclosing transaction on every one of ``aliases``
    has committed; never, if one rolls back."""
    waiting = set(aliases)

    def committed(alias: str) -> None:
        waiting.discard(alias)
        if not waiting:
            then()

    for alias in aliases:
        transaction.on_commit(lambda alias=alias: committed(alias), using=alias)  # type: ignore[misc]


def enclosing_rollback_elsewhere(alias: str) -> bool:
    """Whether a transaction the call runs in on another database than the
    records' is marked for rollback: its writes will not commit, so neither
    may its outcome (waiting for that commit would wait forever)."""
    if len(connections.settings) == 1:
        return False  # one database: there is no other
    return any(
        connection.in_atomic_block and connection.needs_rollback
        for connection in connections.all(initialized_only=True)
        if connection.alias != alias
    )


def enclosed(connection: Any) -> bool:
    """Whether a transaction that commits after the call is open on ``connection``.
    A TestCase's own blocks never commit: under them the stores behave as in
    autocommit, so replays work in users' tests."""
    return any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)


def refused_durable(error: BaseException, own: Any, alias: str) -> bool:
    """Whether ``error`` is Django refusing a durable atomic block on ``alias``
    that only ``own``, the store's open block, enclosed: without it (the call
    owning its transactions) the block would have opened. Under an enclosing
    transaction of the project's (ATOMIC_REQUESTS) it would not, so that
    refusal is not ours to explain."""
    if own is None or not isinstance(error, RuntimeError) or str(error) != DURABLE_REFUSED:
        return False
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    if frame is None or frame.tb_frame.f_code is not transaction.Atomic.__enter__.__code__:
        return False
    connection = connections[alias]
    if frame.tb_frame.f_locals.get("connection") is not connection:
        return False
    enclosing = [block for block in connection.atomic_blocks if not block._from_testcase]
    return enclosing == [own]
