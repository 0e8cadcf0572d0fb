"""Async requests that share a worker thread take turns on it, claim to commit.

``adrive`` runs each store unit with ``sync_to_async(thread_sensitive=True)``,
so that all of one request's database work shares one connection and one
transaction. Django's ASGI handler gives each request a thread of its own for
that. Under an outer ``async_to_sync`` (Django's async tests,
``async_to_sync(scenario)()``), or an ASGI server that sets no
``ThreadSensitiveContext``, the concurrent requests of one event loop all get
the same thread, and so the same connection: a transaction that one request
opened would hold the others' claims, views' writes and stored outcomes, and
its rollback would undo writes that they had already answered for.

So a request that acquired its key holds its worker thread (``hold``, in the
claim's unit) until its outcome is committed or its claim released
(``let_go``). Every other request's unit is run by ``unit``: on a thread that
another request holds, it does not run but waits, on the event loop, until
that request lets go, and is then tried again. The check and the unit are
one call into the thread, so nothing can take the thread between them.
Under a server that gives each request its own thread no request ever waits.

A request is the work inside ``request()``, its own context variable's value:
a call nested in a running request (an idempotent call made by its view) is
part of it, and does not wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from typing import Any

from asgiref.sync import sync_to_async

logger = logging.getLogger("idempotency")

_request: ContextVar[object | None] = ContextVar("idempotency_request", default=None)


class _Thread(threading.local):
    """Who holds this worker thread, for which claims, and who waits for it."""

    def __init__(self) -> None:
        self.holder: object | None = None
        self.claims: list[object] = []
        self.waiting: list[Callable[[], None]] = []


_thread = _Thread()
_BUSY = object()  # a unit that did not run: another request holds the thread


@contextmanager
def request() -> Iterator[None]:
    """Mark what runs inside as one request's work (nested: the outer's)."""
    if _request.get() is not None:
        yield
        return
    token = _request.set(object())
    try:
        yield
    finally:
        _request.reset(token)


def hold(claim: object) -> None:
    """In the worker thread: ``claim`` was acquired, and its request keeps
    this thread until ``let_go(claim)``. Nothing outside ``request()``
    (a synchronous view, a function) holds: it keeps its thread anyway."""
    holder = _request.get()
    if holder is None or _thread.holder not in (None, holder):
        return  # outside a request, or (never under adrive) on another's thread
    _thread.holder = holder
    _thread.claims.append(claim)


def let_go(claim: object) -> None:
    """In the worker thread: ``claim`` is committed or released. When it was
    its request's last, the thread is free and the requests waiting for it
    are woken. Letting go of a claim twice, or of one never held, is nothing."""
    if not any(held is claim for held in _thread.claims):
        return
    _thread.claims = [held for held in _thread.claims if held is not claim]
    if _thread.claims:
        return
    _thread.holder = None
    waiting, _thread.waiting = _thread.waiting, []
    for wake in waiting:
        wake()


async def unit(
    function: Callable[..., Any], *args: Any
) -> tuple[Any, asyncio.CancelledError | None]:
    """``function(*args)`` in the request's worker thread, once no other
    request holds that thread; its result, and the cancellation that came
    while it ran, if one did.

    A cancellation while the request waits for its turn ends the wait at
    once: nothing ran. One that comes while the function runs is held until
    it ends (a thread cannot be stopped, and awaiting it is the only way to
    know what it did), then returned for the caller to raise at its next step.
    """
    loop = asyncio.get_running_loop()
    while True:
        freed = loop.create_future()
        value, cancelled = await _to_its_end(function, args, partial(_wake, loop, freed))
        if value is not _BUSY:
            return value, cancelled
        if cancelled is not None:
            raise cancelled
        logger.debug("Idempotency: an async request waits for another's turn on its worker thread")
        await freed


async def _to_its_end(
    function: Callable[..., Any], args: tuple[Any, ...], wake: Callable[[], None]
) -> tuple[Any, asyncio.CancelledError | None]:
    running = asyncio.ensure_future(
        sync_to_async(_if_free, thread_sensitive=True)(function, args, wake)
    )
    cancelled: asyncio.CancelledError | None = None
    while not running.done():
        try:
            await asyncio.wait({running})  # cancelling wait() leaves the unit running
        except asyncio.CancelledError as cancellation:
            cancelled = cancellation
    if cancelled is not None and running.exception() is not None:
        raise cancelled  # the unit failed: nothing to undo, the cancellation goes on
    return running.result(), cancelled


def _if_free(function: Callable[..., Any], args: tuple[Any, ...], wake: Callable[[], None]) -> Any:
    """In the worker thread: run ``function`` unless another request holds
    the thread; then ``wake`` is kept, to be called when it lets go."""
    if _thread.holder not in (None, _request.get()):
        _thread.waiting.append(wake)
        return _BUSY
    return function(*args)


def _wake(loop: asyncio.AbstractEventLoop, freed: asyncio.Future[None]) -> None:
    """From the worker thread: resolve ``freed`` on its event loop."""
    with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits there
        loop.call_soon_threadsafe(_resolve, freed)


def _resolve(freed: asyncio.Future[None]) -> None:
    if not freed.done():  # a waiter cancelled meanwhile
        freed.set_result(None)
