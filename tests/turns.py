"""Seeing async requests take turns on a shared worker thread (idempotency.turns).

``gate(name)`` holds an async view open until the test opens it: the view
calls ``await GATES[name].pass_through()``; the test awaits ``entered()``,
then ``open()``s it. ``waits_seen()`` counts the requests that began to wait
for their turn, from the DEBUG line ``idempotency.turns`` logs as each does,
so a test acts once a request is seen waiting rather than after a sleep.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager

# Bounds on what a test waits for; a test that reaches one fails.
PATIENCE = 10.0

GATES: dict[str, Gate] = {}


class Gate:
    def __init__(self, name: str) -> None:
        self.name = name
        self._entered = asyncio.Event()
        self._open = asyncio.Event()

    async def pass_through(self) -> None:
        """In the view: say it got here, and wait until the test opens the gate."""
        self._entered.set()
        await asyncio.wait_for(self._open.wait(), PATIENCE)

    async def entered(self) -> None:
        await asyncio.wait_for(self._entered.wait(), PATIENCE)

    def open(self) -> None:
        self._open.set()


@contextmanager
def gate(name: str) -> Iterator[Gate]:
    GATES[name] = opened = Gate(name)
    try:
        yield opened
    finally:
        opened.open()  # never leave a view waiting behind a failed test
        del GATES[name]


class WaitsSeen(logging.Handler):
    """The requests seen starting to wait for their turn."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(logging.DEBUG)
        self.loop = loop
        self.count = 0
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "waits for another's turn" in record.getMessage():
            self.loop.call_soon_threadsafe(self._one_more)

    def _one_more(self) -> None:
        self.count += 1
        self._changed.set()

    async def reach(self, count: int) -> bool:
        """Whether ``count`` requests have been seen waiting within PATIENCE."""

        async def counted() -> None:
            while self.count < count:
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(counted(), PATIENCE)
        except asyncio.TimeoutError:
            return False
        return True


@contextmanager
def waits_seen() -> Iterator[WaitsSeen]:
    """Inside a coroutine: count the requests that begin to wait for their turn."""
    logger = logging.getLogger("idempotency")
    seen = WaitsSeen(asyncio.get_running_loop())
    level = logger.level
    logger.addHandler(seen)
    logger.setLevel(logging.DEBUG)
    try:
        yield seen
    finally:
        logger.setLevel(level)
        logger.removeHandler(seen)
