"""Redis keys: hostile scopes and keys cannot address another record (issue 11)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from idempotency.keys import digest
from idempotency.stores import Attempt, ClaimOutcome, get_store
from idempotency.stores.redis import record_key
from tests.stores.conftest import REDIS_URL, Backend, redis_store_in

pytestmark = pytest.mark.django_db

PREFIX = "idempotency:"
# Binary-looking, very long, hash tags, glob characters, separators.
HOSTILE = [
    "anonymous", "anonymous\x00", "\x00anonymous", "a" * 100_000, "{anonymous}", "}{", "*",
    "anonymous*", "[a-z]*", "?", "\\", "user:1:key", "user:1", "user:1\udcff", "ü", "",
]  # fmt: skip


def attempt(scope: str, key: str = "key-1") -> Attempt:
    return Attempt(scope=scope, key=digest(key), fingerprint="f" * 64, method="POST",
                   path="/plain/", ttl=timedelta(hours=1), lock_for=timedelta(minutes=1),
                   atomic=False)  # fmt: skip


def test_a_record_key_is_the_prefix_and_a_digest_whatever_the_scope_and_key() -> None:
    keys = {record_key(PREFIX, scope, digest("key-1")) for scope in HOSTILE}

    assert len(keys) == len(HOSTILE)
    for key in keys:
        assert key.startswith(PREFIX)
        digest_part = key.removeprefix(PREFIX)
        assert len(digest_part) == 64 and set(digest_part) <= set("0123456789abcdef")


def test_scope_and_key_boundaries_cannot_be_shifted() -> None:
    # "user:1" + "2..." and "user:12" + "..." must not meet in one key.
    assert record_key(PREFIX, "user:1", "2abc") != record_key(PREFIX, "user:12", "abc")


@pytest.mark.parametrize("kind", ["redis", "redis-cluster"])
def test_hostile_scopes_claim_independent_records(
    settings: Any, request: pytest.FixtureRequest, kind: str
) -> None:
    cluster = kind == "redis-cluster"
    url = request.getfixturevalue("cluster").url if cluster else REDIS_URL
    with redis_store_in(settings, url, cluster) as backend:
        store = get_store()
        assert {store.claim(attempt(s)).outcome for s in HOSTILE} == {ClaimOutcome.ACQUIRED}
        assert {store.claim(attempt(s)).outcome for s in HOSTILE} == {ClaimOutcome.IN_PROGRESS}
        names = list(backend.client.scan_iter(match=backend.prefix + "*"))
        assert len(names) == len(HOSTILE)
        if cluster:
            masters = {backend.client.keyslot(name) * 3 // 16384 for name in names}
            assert len(masters) > 1, "every record in one third of the slots"


def test_redis_prefix_starts_every_key(redis_store: Backend) -> None:
    get_store().claim(attempt("anonymous"))

    (name,) = redis_store.client.scan_iter(match=redis_store.prefix + "*")
    assert name.decode() == record_key(redis_store.prefix, "anonymous", digest("key-1"))
