"""A Redis Cluster resharded during a storm of duplicate requests (issue 11).

A cluster of the test's own (3 masters on loopback ports). Client threads send
each new key ``DUPLICATES`` times at once, round after round, while
``redis-cli --cluster reshard`` moves slots, and with them records, from one
master to another. No key may run its view twice; the worst allowed is 503.
"""

from __future__ import annotations

import functools
import json
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from tests.concurrency.race import Answer, client_answer, run_together
from tests.redis_servers import REDIS_CLI, RedisCluster, redis_cluster
from tests.stores.conftest import TALLIES, Backend, redis_store_in
from tests.testapp.views import EXECUTIONS

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]

DUPLICATES = 4
SLOTS_MOVED = 3000
BODY = {"amount": 1, "sleep": 0.05}


@pytest.fixture
def own_cluster(settings: Any) -> Iterator[tuple[RedisCluster, Backend]]:
    with redis_cluster(3) as cluster, redis_store_in(settings, cluster.url, True) as backend:
        yield cluster, backend


def node_id(cluster: RedisCluster, index: int) -> str:
    return cluster.nodes[index].cli("CLUSTER", "MYID").strip()


def slots_of(cluster: RedisCluster, index: int) -> set[int]:
    """The slots the node serves, from its own line of CLUSTER NODES."""
    for line in cluster.nodes[index].cli("CLUSTER", "NODES").splitlines():
        fields = line.split()
        if "myself" in fields[2]:
            slots: set[int] = set()
            for span in fields[8:]:
                if not span.startswith("["):  # "[slot->-node]": a migration in progress
                    first, _, last = span.partition("-")
                    slots.update(range(int(first), int(last or first) + 1))
            return slots
    raise AssertionError("no 'myself' line in CLUSTER NODES")


def post(key: str) -> Answer:
    response = Client().post(
        "/counted/", json.dumps(BODY), content_type="application/json",
        headers={"Idempotency-Key": key},
    )  # fmt: skip
    return client_answer(response)


def test_resharding_during_a_storm_never_runs_a_key_twice(
    own_cluster: tuple[RedisCluster, Backend],
) -> None:
    cluster, backend = own_cluster
    slots_before = slots_of(cluster, 0)
    answers: list[tuple[str, Answer]] = []
    resharded = threading.Event()

    def storm() -> None:
        while not resharded.is_set():
            key = uuid.uuid4().hex
            for answer in run_together([functools.partial(post, key)] * DUPLICATES):
                answers.append((key, answer))

    storming = threading.Thread(target=storm)
    storming.start()
    try:
        deadline = time.monotonic() + 60
        while len(answers) < 20 * DUPLICATES:  # records on every master, to be moved
            assert time.monotonic() < deadline, "the storm did not start"
            time.sleep(0.05)
        assert REDIS_CLI is not None
        started = time.monotonic()
        subprocess.run(
            [REDIS_CLI, "--cluster", "reshard", f"127.0.0.1:{cluster.nodes[0].port}",
             "--cluster-from", node_id(cluster, 0), "--cluster-to", node_id(cluster, 1),
             "--cluster-slots", str(SLOTS_MOVED), "--cluster-yes", "--cluster-pipeline", "10"],
            capture_output=True, timeout=300, check=True,
        )  # fmt: skip
        took = time.monotonic() - started
    finally:
        resharded.set()
        storming.join(120)

    moved = slots_before - slots_of(cluster, 0)
    assert len(moved) == SLOTS_MOVED
    keys_moved = {
        k for k, _ in answers if backend.client.keyslot(backend._key(k, "anonymous")) in moved
    }
    assert keys_moved, "no record was in a slot that moved"
    kinds = Counter(
        "replay" if a.replayed else f"{a.status} {a.problem_slug or ''}".strip() for _, a in answers
    )
    keys = {key for key, _ in answers}
    assert all(EXECUTIONS.get(key, 0) <= 1 for key in keys), "a key ran twice"
    assert set(kinds) <= {"201", "replay", "409 request-in-progress", "503 store-unavailable"}
    originals = Counter(key for key, a in answers if a.status == 201 and not a.replayed)
    assert all(count == 1 for count in originals.values())
    # The records moved with their slots: every completed key replays after.
    for key in originals:
        again = post(key)
        assert (again.status, again.replayed) == (201, True), key
        assert EXECUTIONS[key] == 1
    TALLIES.append(
        f"Redis Cluster resharded ({SLOTS_MOVED} slots in {took:.1f} s) during a storm of "
        f"{len(keys)} keys x {DUPLICATES} duplicates ({len(keys_moved)} in moved slots): "
        f"answers {dict(kinds)}; at most one execution per key; every completed key "
        "replayed after"
    )
