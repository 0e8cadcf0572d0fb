"""``python -m benchmarks.redis_failover [--trials N] [--threads N]``

What an uncoordinated Redis Cluster failover does to the Redis store's claims
(issue 11; docs/redis.md, "Outages and failover"). Not part of the test
suite: it measures, it does not assert.

Each trial starts a cluster of its own (3 masters, one replica each, on
loopback ports, ``cluster-node-timeout`` 1 s), sends the store's CLAIM script
for fresh keys in the slots of one master from ``--threads`` threads, each
claim on its own key as a first request would, then SIGKILLs that master
mid-stream (with ``--replica-lag-ms``, the replica SIGSTOPped that long
before, as a replica that fell behind). Its replica is promoted once the cluster has timed the master out.
Then every claim the dead master answered ``acquired`` is looked up on the
new master: a claim missing there was lost, and its duplicate (the same key
sent again) is claimed afresh, so the view would run twice.

Run once as the store does it (the claim alone), and once with ``WAIT 1
<timeout>`` sent after each claim on the same connection, the acknowledgement
counted only when one replica confirmed it. The per-claim latency of both is
measured on a healthy cluster before the kill.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import threading
import time
import uuid
from typing import Any

import redis

from idempotency.stores.redis_scripts import CLAIM
from tests.redis_servers import RedisCluster, RedisServer, redis_cluster

PREFIX = "idempotency-failover:"
LOCK_MS, TTL_MS = 30_000, 86_400_000


def claim_args(record_id: str) -> list[Any]:
    return [record_id, "fingerprint", "POST", "/orders/", LOCK_MS, TTL_MS, 1]


def keys_in(client: Any, slots: set[int], count: int) -> list[str]:
    found: list[str] = []
    while len(found) < count:
        key = PREFIX + uuid.uuid4().hex
        if client.keyslot(key) in slots:
            found.append(key)
    return found


def slots_served(node: RedisServer) -> set[int]:
    for line in node.cli("CLUSTER", "NODES").splitlines():
        fields = line.split()
        if "myself" in fields[2]:
            slots: set[int] = set()
            for span in fields[8:]:
                first, _, last = span.partition("-")
                slots.update(range(int(first), int(last or first) + 1))
            return slots
    raise AssertionError("no 'myself' line")


def claim(client: redis.Redis, sha: str, key: str, wait_ms: int | None) -> bool:
    """True when the claim was acknowledged (and, with ``wait_ms``, by a replica)."""
    record_id = uuid.uuid4().hex
    if wait_ms is None:
        return bool(client.evalsha(sha, 1, key, *claim_args(record_id))[0] == b"acquired")
    pipe = client.pipeline(transaction=False)  # one connection: WAIT covers the claim
    pipe.evalsha(sha, 1, key, *claim_args(record_id))
    pipe.wait(1, wait_ms)
    reply, replicas = pipe.execute()
    return bool(reply[0] == b"acquired" and replicas >= 1)


def latency(client: redis.Redis, sha: str, keys: list[str], wait_ms: int | None) -> list[float]:
    times = []
    for key in keys:
        started = time.perf_counter()
        claim(client, sha, key, wait_ms)
        times.append((time.perf_counter() - started) * 1e6)
    return times


def trial(threads: int, wait_ms: int | None, probe: int, lag_ms: int) -> dict[str, Any]:
    with redis_cluster(3, 1, "--cluster-node-timeout", "1000") as cluster:
        return _trial(cluster, threads, wait_ms, probe, lag_ms)


def _trial(
    cluster: RedisCluster, threads: int, wait_ms: int | None, probe: int, lag_ms: int
) -> dict[str, Any]:
    master_id, (replica_id,) = next(iter(cluster.topology().items()))
    master, replica = cluster.node(master_id), cluster.node(replica_id)
    router = redis.RedisCluster(host="127.0.0.1", port=master.port)
    slots = slots_served(master)
    direct = redis.Redis(host="127.0.0.1", port=master.port, socket_timeout=2)
    sha = direct.script_load(CLAIM)
    micros = latency(direct, sha, keys_in(router, slots, probe), wait_ms)

    acknowledged: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def stream() -> None:
        client = redis.Redis(host="127.0.0.1", port=master.port, socket_timeout=2)
        try:
            while not stop.is_set():
                (key,) = keys_in(router, slots, 1)
                if claim(client, sha, key, wait_ms):
                    with lock:
                        acknowledged.append(key)
        except redis.RedisError:
            return  # the master is gone

    workers = [threading.Thread(target=stream) for _ in range(threads)]
    for worker in workers:
        worker.start()
    time.sleep(1.0)  # a stream of claims under way, then the crash in the middle of it
    assert master.process is not None and replica.process is not None
    if lag_ms:
        replica.process.send_signal(signal.SIGSTOP)  # a replica that fell behind
        time.sleep(lag_ms / 1000)
    master.process.kill()
    killed = time.monotonic()
    replica.process.send_signal(signal.SIGCONT)
    stop.set()
    for worker in workers:
        worker.join(30)
    master.process.wait(10)
    master.process = None
    deadline = time.monotonic() + 30
    while replica.cli("ROLE", check=False).split()[:1] != ["master"]:
        assert time.monotonic() < deadline, "the replica was not promoted"
        time.sleep(0.05)
    promoted = time.monotonic() - killed

    survivor = redis.Redis(host="127.0.0.1", port=replica.port)
    survivor.script_load(CLAIM)  # a script cache is not replicated
    present = survivor.pipeline(transaction=False)
    for key in acknowledged:
        present.exists(key)
    lost = [key for key, found in zip(acknowledged, present.execute(), strict=True) if not found]
    rerun = sum(
        survivor.evalsha(sha, 1, key, *claim_args(uuid.uuid4().hex))[0] == b"acquired"
        for key in lost
    ) if lost else 0  # fmt: skip
    router.close()
    return {
        "acknowledged": len(acknowledged),
        "lost": len(lost),
        "duplicates_claimed_again": rerun,
        "promoted_after_s": promoted,
        "claim_us_median": statistics.median(micros),
        "claim_us_p99": statistics.quantiles(micros, n=100)[98],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--wait-ms", type=int, default=100, help="WAIT's timeout")
    parser.add_argument(
        "--replica-lag-ms", type=int, default=0,
        help="SIGSTOP the replica this long before the master is killed (a replica behind)",
    )  # fmt: skip
    parser.add_argument("--probe", type=int, default=2000, help="claims timed per trial")
    args = parser.parse_args()
    for label, wait_ms in (("claim alone", None), (f"claim + WAIT 1 {args.wait_ms}", args.wait_ms)):
        results = [
            trial(args.threads, wait_ms, args.probe, args.replica_lag_ms)
            for _ in range(args.trials)
        ]
        for number, result in enumerate(results, 1):
            print(f"{label}, trial {number}: " + ", ".join(
                f"{name} {value:.1f}" if isinstance(value, float) else f"{name} {value}"
                for name, value in result.items()
            ))  # fmt: skip
        print(
            f"{label}: {sum(r['lost'] for r in results)} of "
            f"{sum(r['acknowledged'] for r in results)} acknowledged claims lost in "
            f"{args.trials} kills; claim latency median "
            f"{statistics.median(r['claim_us_median'] for r in results):.0f} us"
        )


if __name__ == "__main__":
    main()
