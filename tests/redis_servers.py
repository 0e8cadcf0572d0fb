"""redis-server processes of the tests' own, on free loopback ports.

For what the shared Redis at 127.0.0.1:6379 must never be put through: a
configuration of the test's choosing, an outage, a cluster. Each server runs
in a temporary directory without persistence, and is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers import free_port

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")


@dataclass
class RedisServer:
    port: int
    directory: Path
    arguments: Sequence[str] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or start again, on the same port) and wait until it answers."""
        if REDIS_SERVER is None:
            pytest.fail("redis-server is not installed: the Redis store tests need it.")
        log = (self.directory / f"redis-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.directory),
             *self.arguments],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.wait_until_up()

    def wait_until_up(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.cli("PING", check=False).strip() == "PONG":
                return
            time.sleep(0.05)
        raise AssertionError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        """SIGKILL: as abrupt as a crash or a cut network, and nothing saved."""
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def cli(self, *command: str, check: bool = True) -> str:
        assert REDIS_CLI is not None
        done = subprocess.run(
            [REDIS_CLI, "-h", "127.0.0.1", "-p", str(self.port), *command],
            capture_output=True, timeout=30, check=check,
        )  # fmt: skip
        return done.stdout.decode()


@contextlib.contextmanager
def redis_server(*arguments: str) -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="idempotency-redis-") as directory:
        server = RedisServer(free_port(), Path(directory), arguments)
        server.start()
        try:
            yield server
        finally:
            server.stop()


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise AssertionError("no free pair of ports for a cluster node")


@dataclass
class RedisCluster:
    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def node(self, node_id: str) -> RedisServer:
        for node in self.nodes:
            if node.cli("CLUSTER", "MYID").strip() == node_id:
                return node
        raise AssertionError(f"no node {node_id} in the cluster")

    def topology(self) -> dict[str, list[str]]:
        """{master id: [ids of its replicas]}, as the first live node sees it."""
        lines = next(n for n in self.nodes if n.process is not None).cli("CLUSTER", "NODES")
        masters: dict[str, list[str]] = {}
        replicas: list[tuple[str, str]] = []
        for line in lines.splitlines():
            fields = line.split()
            if "fail" in fields[2] or "noaddr" in fields[2]:
                continue
            if "master" in fields[2]:
                masters.setdefault(fields[0], [])
            else:
                replicas.append((fields[0], fields[3]))
        for replica, master in replicas:
            masters.setdefault(master, []).append(replica)
        return masters

    def wait_until_settled(self, timeout: float = 30) -> None:
        """Every live node says the cluster is ok, and every replica is in sync
        with its master (a manual failover needs a replica that is)."""
        deadline = time.monotonic() + timeout
        live = [n for n in self.nodes if n.process is not None]
        while True:
            states = [n.cli("CLUSTER", "INFO") + n.cli("INFO", "replication") for n in live]
            if all(
                "cluster_state:ok" in state
                and ("role:master" in state or "master_link_status:up" in state)
                for state in states
            ):
                return
            assert time.monotonic() < deadline, "the cluster did not settle"
            time.sleep(0.1)


@contextlib.contextmanager
def redis_cluster(masters: int = 3, replicas: int = 0, *arguments: str) -> Iterator[RedisCluster]:
    """``masters`` redis-server nodes joined into a Redis Cluster, each with
    ``replicas`` replicas (``redis-cli --cluster create --cluster-replicas``).
    ``arguments`` go to every redis-server."""
    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="idem-cluster-")))
        nodes = []
        for _ in range(masters * (1 + replicas)):
            port = free_cluster_port()
            node = RedisServer(port, directory, (
                "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", "2000", *arguments,
            ))  # fmt: skip
            stack.callback(node.stop)
            node.start()
            nodes.append(node)
        assert REDIS_CLI is not None
        subprocess.run(
            [REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes),
             "--cluster-replicas", str(replicas), "--cluster-yes"],
            capture_output=True, timeout=60, check=True,
        )  # fmt: skip
        cluster = RedisCluster(nodes)
        deadline = time.monotonic() + 30
        while len(cluster.topology()) != masters or any(
            len(of) != replicas for of in cluster.topology().values()
        ):
            assert time.monotonic() < deadline, "the cluster's replicas did not join"
            time.sleep(0.1)
        cluster.wait_until_settled()
        yield cluster
