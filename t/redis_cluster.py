"""A Redis Cluster of three masters and three replicas, started by the tests.

Six ``redis-server`` processes on free loopback ports (data and cluster bus) in a
temporary directory, joined with ``redis-cli --cluster create``.  Creating one takes a few
seconds, so the session starts one, when a test first asks for it (the ``redis_cluster``
fixture of ``t/conftest.py``), and shares it.  A test may kill a master
(:meth:`RedisClusterNodes.kill_master`); its replica takes over within a few seconds (the
node timeout is short), and the killed node is started again as a replica of it
(:meth:`RedisClusterNodes.restart`), so the next test finds three masters with one
replica each again.  Only the processes started here are ever stopped.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import redis

from t.conftest import free_port, port_open

__all__ = ["ClusterNode", "RedisClusterNodes", "start_cluster"]

#: milliseconds without an answer before a node counts as failing; short, so a failover
#: takes seconds, long enough that a busy machine does not fail healthy nodes
NODE_TIMEOUT_MS = 1500
#: seconds to wait for the cluster to form, and for a failover or a rejoin to settle
SETTLE_TIMEOUT = 30.0


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed (the Redis Cluster tests start their own servers)")
    return found


def _free_port_pair() -> tuple[int, int]:
    """A data port and a cluster bus port, both free (the bus is set explicitly, since
    the default data port + 10000 may be taken or past 65535)."""
    port = free_port()
    bus = free_port()
    while bus == port:
        bus = free_port()
    return port, bus


@dataclass(eq=False)
class ClusterNode:
    """One ``redis-server`` of the cluster (a process this module started)."""

    port: int
    bus_port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start (or start again, from its ``nodes.conf``) this node's server."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [
            _binary("redis-server"),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            str(self.bus_port),
            "--cluster-config-file",
            str(self.workdir / "nodes.conf"),
            "--cluster-node-timeout",
            str(NODE_TIMEOUT_MS),
            # a replica takes over however long it was cut off from its master
            "--cluster-replica-validity-factor",
            "0",
            # the other masters' slots keep answering while one master fails over
            "--cluster-require-full-coverage",
            "no",
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
            "--appendonly",
            "no",
            "--save",
            "",
            "--shutdown-timeout",
            "0",
            "--dir",
            str(self.workdir),
        ]
        self.log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port, 0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server {self.address} did not start: {self.log_tail()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: the node vanishes as a crashed machine would, without a goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self._close_log()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None

    def log_tail(self) -> str:
        path = self.workdir / "server.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"

    def client(self) -> redis.Redis:
        """A plain (non-cluster) client of this node alone."""
        return redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=5)


@dataclass(eq=False)
class RedisClusterNodes:
    """The running cluster: its nodes, its URLs, and the faults a test may cause."""

    workdir: Path
    nodes: list[ClusterNode] = field(default_factory=list)

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def url(self, scheme: str = "redis+streams", *, all_nodes: bool = False) -> str:
        """A connection URL naming the first node, or every node (``;``-separated)."""
        nodes = self.nodes if all_nodes else self.nodes[:1]
        return ";".join(f"{scheme}://{node.address}" for node in nodes)

    def node(self, port: int) -> ClusterNode:
        for node in self.nodes:
            if node.port == port:
                return node
        raise KeyError(f"no node of this cluster listens on {port}")

    @staticmethod
    def _seen_by(node: ClusterNode) -> dict[int, tuple[str, str, str]] | None:
        """port -> (node id, role, master id or '-') as ``node`` sees the cluster (None:
        it does not answer)."""
        if not node.alive:
            return None
        with contextlib.closing(node.client()) as client:
            try:
                nodes = client.cluster("NODES")
            except redis.RedisError:
                return None
        topology: dict[int, tuple[str, str, str]] = {}
        for address, entry in nodes.items():
            flags = str(entry["flags"]).split(",")
            role = "master" if "master" in flags else "replica"
            if "fail" in flags or "fail?" in flags:
                role = "failed"
            topology[int(address.rsplit(":", 1)[1])] = (entry["node_id"], role, entry["master_id"])
        return topology

    def _topology(self) -> dict[int, tuple[str, str, str]]:
        """The cluster as the first node that answers sees it."""
        for node in self.nodes:
            seen = self._seen_by(node)
            if seen is not None:
                return seen
        raise RuntimeError("no node of the cluster answers")

    def masters(self) -> list[int]:
        """Ports of the masters that are alive, as the cluster sees it now."""
        alive = {node.port for node in self.nodes if node.alive}
        return sorted(port for port, (_, role, _) in self._topology().items() if role == "master" and port in alive)

    def master_of_key(self, key: str | bytes) -> int:
        """Port of the master that serves ``key``'s slot now."""
        for node in self.nodes:
            if not node.alive:
                continue
            with contextlib.closing(node.client()) as client:
                slot = int(client.execute_command("CLUSTER KEYSLOT", key))
                for start, end, master, *_ in client.execute_command("CLUSTER SLOTS"):
                    if int(start) <= slot <= int(end):
                        return int(master[1])
        raise RuntimeError(f"no master serves the slot of {key!r}")

    def names_on_distinct_masters(self, base: str, count: int) -> list[str]:
        """``count`` queue names (``base.N``) served by ``count`` different masters: in
        either Redis transport's cluster layout every key of a queue is in the slot of its
        ``{name}`` hash tag."""
        found: dict[int, str] = {}
        for n in range(1000):
            name = f"{base}.{n}"
            found.setdefault(self.master_of_key(f"{{{name}}}"), name)
            if len(found) == count:
                return list(found.values())
        raise AssertionError(f"no {count} queue names on distinct masters")

    def replica_of(self, master_port: int) -> int:
        topology = self._topology()
        master_id = topology[master_port][0]
        for port, (_, role, of) in topology.items():
            if role == "replica" and of == master_id:
                return port
        raise RuntimeError(f"master {master_port} has no replica")

    def wait_ready(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Until every node says cluster_state:ok, all agree on three masters, and every
        replica's link to its master is up (so WAIT can be satisfied)."""
        deadline = time.monotonic() + timeout
        problem = "not checked yet"
        while time.monotonic() < deadline:
            problem = self._not_ready()
            if not problem:
                return
            time.sleep(0.1)
        raise RuntimeError(f"the Redis Cluster did not settle in {timeout} s: {problem}")

    def _not_ready(self) -> str:
        for node in self.nodes:
            if not node.alive:
                return f"{node.address} is not running"
            with contextlib.closing(node.client()) as client:
                try:
                    info = client.cluster("INFO")
                    replication = client.info("replication")
                except redis.RedisError as exc:
                    return f"{node.address}: {exc}"
            if info.get("cluster_state") != "ok":
                return f"{node.address}: cluster_state {info.get('cluster_state')}"
            if int(info.get("cluster_known_nodes", 0)) != len(self.nodes):
                return f"{node.address} knows {info.get('cluster_known_nodes')} nodes"
            if int(info.get("cluster_size", 0)) != 3:
                return f"{node.address} sees {info.get('cluster_size')} masters with slots"
            if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                return f"{node.address}: link to its master is {replication.get('master_link_status')}"
            if replication.get("role") == "master":
                # online: the master has the replica's first acknowledgement (WAIT counts it)
                state = (replication.get("slave0") or {}).get("state")
                if int(replication.get("connected_slaves", 0)) != 1 or state != "online":
                    return f"{node.address}: {replication.get('connected_slaves')} replicas connected ({state})"
        roles = [role for _, role, _ in self._topology().values()]
        if roles.count("master") != 3 or roles.count("replica") != 3:
            return f"roles are {sorted(roles)}"
        return self._not_acknowledging()

    def _not_acknowledging(self) -> str:
        """Whether each master has a replica acknowledging writes.  A replica reported
        online may still answer its first ``WAIT`` only with its once-a-second
        acknowledgement: the tests' ``wait_replicas`` timeouts are shorter."""
        for port in self.masters():
            key = self._key_on(port)
            with contextlib.closing(self.node(port).client()) as client:
                try:
                    client.set(key, b"probe")
                    acked = client.wait(1, 100)
                    client.delete(key)
                except redis.RedisError as exc:
                    return f"127.0.0.1:{port}: {exc}"
            if acked < 1:
                return f"127.0.0.1:{port}: no replica acknowledges writes yet"
        return ""

    def _key_on(self, port: int) -> str:
        """A key served by the master on ``port``."""
        with contextlib.closing(self.node(port).client()) as client:
            slots = client.execute_command("CLUSTER SLOTS")
            ranges = [(int(start), int(end)) for start, end, master, *_ in slots if int(master[1]) == port]
            for n in range(10_000):
                key = f"_kl_probe{{{n}}}"
                slot = int(client.execute_command("CLUSTER KEYSLOT", key))
                if any(start <= slot <= end for start, end in ranges):
                    return key
        raise RuntimeError(f"no key found for the master on {port}")

    def kill_master(self, port: int, timeout: float = SETTLE_TIMEOUT) -> int:
        """SIGKILL the master on ``port``; return the port of its replica once that
        replica is the master of its slots and every live node agrees."""
        topology = self._topology()
        if topology.get(port, ("", "", ""))[1] != "master":
            raise ValueError(f"{port} is not a master of this cluster")
        replica = self.replica_of(port)
        self.node(port).kill()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._promoted(replica):
                return replica
            time.sleep(0.1)
        raise RuntimeError(f"the replica {replica} of the killed master {port} was not promoted in {timeout} s")

    def _promoted(self, replica: int) -> bool:
        for node in self.nodes:
            if not node.alive:
                continue
            with contextlib.closing(node.client()) as client:
                try:
                    if client.cluster("INFO").get("cluster_state") != "ok":
                        return False
                except redis.RedisError:
                    return False
            seen = self._seen_by(node)
            if seen is None or seen.get(replica, ("", "", ""))[1] != "master":
                return False
        return True

    def restart(self, port: int, timeout: float = SETTLE_TIMEOUT) -> None:
        """Start a killed node again: it rejoins as a replica of the master that took its
        slots; returns when the cluster is whole again."""
        node = self.node(port)
        if node.alive:
            return
        node.start()
        self.wait_ready(timeout)

    def heal(self) -> None:
        """Start every killed node again (between tests)."""
        dead = [node for node in self.nodes if not node.alive]
        for node in dead:
            node.start()
        if dead:
            self.wait_ready()

    def flush(self) -> None:
        """Delete every key on every master (the cluster is the tests' own)."""
        for port in self.masters():
            with contextlib.closing(self.node(port).client()) as client:
                client.flushall()

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_cluster(workdir: Path | None = None) -> RedisClusterNodes:
    """Start six nodes, join them as three masters with a replica each, and return once
    the cluster is ready.  The caller closes it."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="kl-redis-cluster-"))
    cluster = RedisClusterNodes(workdir)
    try:
        used: set[int] = set()
        for index in range(6):
            port, bus = _free_port_pair()
            while port in used or bus in used:
                port, bus = _free_port_pair()
            used.update((port, bus))
            node = ClusterNode(port, bus, workdir / f"node{index}")
            cluster.nodes.append(node)
            node.start()
        create = subprocess.run(
            [
                _binary("redis-cli"),
                "--cluster",
                "create",
                *(node.address for node in cluster.nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=60,
        )
        if create.returncode != 0:
            output = (create.stdout + create.stderr)[-2000:].decode(errors="replace")
            raise RuntimeError(f"redis-cli --cluster create failed: {output}")
        cluster.wait_ready()
    except BaseException:
        cluster.close()
        raise
    return cluster


@contextlib.contextmanager
def running_cluster() -> Iterator[RedisClusterNodes]:
    """A cluster for the length of the block."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.close()
