"""The Redis store's pool: one per process, made on first use, made again after a fork."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pytest

from idempotency.conf import idempotency_settings
from idempotency.stores import Attempt, ClaimOutcome, get_store
from idempotency.stores.redis_connection import connection
from tests.stores.conftest import Backend

pytestmark = pytest.mark.django_db


def attempt(scope: str) -> Attempt:
    return Attempt(scope=scope, key="k" * 64, fingerprint="f" * 64, method="POST", path="/",
                   ttl=timedelta(hours=1), lock_for=timedelta(minutes=1), atomic=False)  # fmt: skip


def test_a_forked_process_makes_a_pool_of_its_own(redis_store: Backend) -> None:
    store = get_store()
    assert store.claim(attempt("parent")).outcome is ClaimOutcome.ACQUIRED
    url: Any = idempotency_settings.REDIS_URL
    inherited = connection(url, False)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: no pytest from here on, only an answer
        answer = b"0"
        try:
            own = connection(url, False)
            claimed = store.claim(attempt("child")).outcome is ClaimOutcome.ACQUIRED
            if own is not inherited and own.pid == os.getpid() and claimed:
                answer = b"1"
        finally:
            os.write(write, answer)
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(child, 0)
    assert os.read(read, 1) == b"1", "the child reused the parent's pool, or could not claim"
    assert connection(url, False) is inherited  # the parent's pool stays its own
    assert store.claim(attempt("parent")).outcome is ClaimOutcome.IN_PROGRESS
