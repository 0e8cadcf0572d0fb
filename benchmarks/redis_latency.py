"""``python -m benchmarks.redis_latency [--url URL] [--calls N]``

Where the Redis store's time goes (issue 11): one round trip on a raw
socket, one ``PING`` through redis-py, and each of the store's scripts as the
store sends them (registered, EVALSHA, through its per-process connection),
one at a time, in the order a new key sends them: CLAIM, CONFIRM, COMPLETE,
then the CLAIM of a replay. Medians and p90 in microseconds. The keys are under
a prefix of the run's own and are deleted at the end.
"""

from __future__ import annotations

import argparse
import functools
import socket
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from idempotency.stores.redis import RedisRecordStore
from idempotency.stores.redis_connection import connection

LOCK_MS, TTL_MS = 30_000, 86_400_000


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1e6


def raw_ping(url: str) -> Callable[[], Any]:
    parsed = urlparse(url)
    sock = socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def ping() -> None:
        sock.sendall(b"PING\r\n")
        assert sock.recv(64) == b"+PONG\r\n"

    return ping


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    prefix = f"idempotency-latency-{uuid.uuid4().hex}:"
    store = RedisRecordStore(args.url, False, prefix)
    client = connection(args.url, False).client
    times: dict[str, list[float]] = {
        "raw socket PING": [], "redis-py PING": [], "CLAIM (new key)": [], "CONFIRM": [],
        "COMPLETE": [], "CLAIM (replay)": [],
    }  # fmt: skip
    ping = raw_ping(args.url)
    server_before = client.info("commandstats").get("cmdstat_evalsha", {})
    try:
        for number in range(args.calls + 200):
            key = f"{prefix}{number}"
            record_id = uuid.uuid4().hex
            claim = [record_id, "fp", "POST", "/orders/", LOCK_MS, TTL_MS, 1]
            body = b'{"id": 1, "amount": 1250, "currency": "EUR"}'
            complete = [record_id, 1, 201, '{"Content-Type": "application/json"}', 0, 1, body]
            again = [uuid.uuid4().hex, *claim[1:]]
            sample = {
                "raw socket PING": timed(ping),
                "redis-py PING": timed(client.ping),
                "CLAIM (new key)": timed(functools.partial(store._run, "CLAIM", key, claim)),
                "CONFIRM": timed(
                    functools.partial(store._run, "CONFIRM", key, [record_id, 1, LOCK_MS])
                ),
                "COMPLETE": timed(functools.partial(store._run, "COMPLETE", key, complete)),
                "CLAIM (replay)": timed(functools.partial(store._run, "CLAIM", key, again)),
            }
            if number >= 200:  # warmed up
                for name, value in sample.items():
                    times[name].append(value)
        server = client.info("commandstats").get("cmdstat_evalsha", {})
    finally:
        for name in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(name)
    for name, values in times.items():
        deciles = statistics.quantiles(values, n=10)
        print(f"{name:18} median {statistics.median(values):6.1f} us   p90 {deciles[8]:6.1f} us")
    calls = server["calls"] - server_before.get("calls", 0)
    usec = server["usec"] - server_before.get("usec", 0)
    print(f"inside Redis, per script call (EVALSHA, INFO commandstats): {usec / calls:.1f} us "
          "(every client of this Redis counted)")  # fmt: skip
    new_key = sum(statistics.median(times[n]) for n in ("CLAIM (new key)", "CONFIRM", "COMPLETE"))
    print(f"a new key's three scripts: {new_key:.0f} us; a replay's one: "
          f"{statistics.median(times['CLAIM (replay)']):.0f} us")  # fmt: skip


if __name__ == "__main__":
    main()
