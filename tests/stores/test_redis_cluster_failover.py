"""A Redis Cluster master failed over during a storm of duplicate requests (issue 11).

A cluster of the test's own: 3 masters with one replica each, on loopback
ports. Client threads send each new key ``DUPLICATES`` times at once, round
after round, while one replica takes over its master with ``CLUSTER
FAILOVER``: the coordinated failover, in which the master stops taking writes
until its replica has caught up, so nothing it acknowledged is lost. No key
may run its view twice, the worst allowed is 503, and the store keeps working
on the new master without a restart (redis-py follows the new topology).

An uncoordinated failover (the master killed, its replica promoted by the
cluster) can lose what the master acknowledged last: benchmarks/redis_failover.py
measures it, and docs/redis.md gives the figures.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.concurrency.race import Answer, run_together
from tests.redis_servers import RedisCluster, RedisServer, redis_cluster
from tests.stores.conftest import TALLIES, Backend, redis_store_in
from tests.stores.test_redis_cluster_storm import DUPLICATES, post, slots_of
from tests.testapp.views import EXECUTIONS

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]

# Rounds of duplicates on each side of the failover: enough for every master
# to hold records, few enough for a short test.
ROUNDS_EACH_SIDE = 20


@pytest.fixture
def replicated_cluster(settings: Any) -> Iterator[tuple[RedisCluster, Backend]]:
    with redis_cluster(3, 1) as cluster, redis_store_in(settings, cluster.url, True) as backend:
        yield cluster, backend


def role(node: RedisServer) -> str:
    return node.cli("ROLE").split()[0]


def test_a_master_failed_over_during_a_storm_never_runs_a_key_twice(
    replicated_cluster: tuple[RedisCluster, Backend],
) -> None:
    cluster, backend = replicated_cluster
    master_id, (replica_id,) = next(iter(cluster.topology().items()))
    master, replica = cluster.node(master_id), cluster.node(replica_id)
    slots = slots_of(cluster, cluster.nodes.index(master))
    answers: list[tuple[str, Answer]] = []
    stop = threading.Event()

    def storm() -> None:
        while not stop.is_set():
            key = uuid.uuid4().hex
            for answer in run_together([functools.partial(post, key)] * DUPLICATES):
                answers.append((key, answer))

    def wait_for(condition: Any, what: str) -> None:
        deadline = time.monotonic() + 60
        while not condition():
            assert time.monotonic() < deadline, what
            time.sleep(0.02)

    storming = threading.Thread(target=storm)
    storming.start()
    try:
        wait_for(lambda: len(answers) >= ROUNDS_EACH_SIDE * DUPLICATES, "the storm did not start")
        assert replica.cli("CLUSTER", "FAILOVER").strip() == "OK"
        started = time.monotonic()
        wait_for(lambda: role(replica) == "master" and role(master) == "slave", "no failover")
        took = time.monotonic() - started
        after = len(answers)
        wait_for(lambda: len(answers) >= after + ROUNDS_EACH_SIDE * DUPLICATES, "the storm stopped")
    finally:
        stop.set()
        storming.join(120)

    assert slots_of(cluster, cluster.nodes.index(replica)) == slots  # it took them all over
    keys = {key for key, _ in answers}
    assert all(EXECUTIONS.get(key, 0) <= 1 for key in keys), "a key ran twice"
    kinds = Counter(
        "replay" if a.replayed else f"{a.status} {a.problem_slug or ''}".strip() for _, a in answers
    )
    assert set(kinds) <= {"201", "replay", "409 request-in-progress", "503 store-unavailable"}
    originals = Counter(key for key, a in answers if a.status == 201 and not a.replayed)
    assert all(count == 1 for count in originals.values())
    on_the_new_master = {
        key
        for key, a in answers[after:]
        if a.status == 201 and backend.client.keyslot(backend._key(key, "anonymous")) in slots
    }
    assert on_the_new_master, "no key in the failed-over slots was served after the failover"
    # Nothing the old master acknowledged was lost: every completed key
    # replays, the ones it stored before the failover included.
    before_failover = {key for key, a in answers[:after] if key in originals}
    assert {k for k in before_failover if backend.client.keyslot(backend._key(k, "anonymous"))
            in slots}, "no record was on the master that failed over"  # fmt: skip
    for key in originals:
        again = post(key)
        assert (again.status, again.replayed) == (201, True), key
        assert EXECUTIONS[key] == 1
    TALLIES.append(
        f"Redis Cluster master failed over (CLUSTER FAILOVER, {took:.2f} s until the roles "
        f"swapped) during a storm of {len(keys)} keys x {DUPLICATES} duplicates: answers "
        f"{dict(kinds)}; at most one execution per key; {len(on_the_new_master)} keys served "
        "by the new master; every completed key replayed after"
    )
