"""A real Redis Cluster for the tests: three masters and three replicas on free ports.

Debian's redis-server started six times with ``--cluster-enabled yes`` in a temp dir, then
``redis-cli --cluster create … --cluster-replicas 1``. The node timeout is short (1 s) so
a killed master's replica takes over within a few seconds; each node keeps an AOF, as in
production (docs/scaling.md, "Durability").
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis.crc import key_slot

NODE_TIMEOUT_MS = 1000


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too: from 20000-29999,
    below the kernel's ephemeral range so no outgoing connection takes it meanwhile."""
    for _ in range(1000):
        port = random.randrange(20000, 30000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of ports for a Redis Cluster node")


def _ask(port: int, *args: str) -> str:
    """One redis-cli command to one node; its output ('' if the node is down)."""
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.fail("redis-cli is not installed: run scripts/test.sh, which installs it")
    out = subprocess.run(
        [cli, "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return out.stdout


def _ping(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")
    return False


@dataclass
class RedisCluster:
    dir: Path
    ports: list[int]
    wait: int = 1
    """Replicas an append waits for (the URL's ``wait``)."""
    config: str | None = None
    """A redis.conf to run each node with (config/redis-cluster-node.conf); the port, the
    directory and the short node timeout override it."""
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        nodes = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        return f"redis+cluster://{nodes}?wait={self.wait}&wait_ms=2000"

    def start_node(self, port: int) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: run scripts/test.sh, which installs it")
        home = self.dir / str(port)
        home.mkdir(exist_ok=True)
        # fmt: off
        args = [
            binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(home),
            "--cluster-enabled", "yes", "--cluster-config-file", str(home / "nodes.conf"),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--daemonize", "no", "--logfile", str(home / "redis.log"),
        ]
        # fmt: on
        if self.config is None:
            args += ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args.insert(1, str(Path(self.config).resolve()))
        self.procs[port] = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not _ping(port):
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server (cluster node) did not start on port {port}")
            time.sleep(0.05)

    def start(self) -> None:
        for port in self.ports:
            self.start_node(port)
        cli = shutil.which("redis-cli")
        assert cli is not None
        nodes = [f"127.0.0.1:{p}" for p in self.ports]
        subprocess.run(
            [cli, "--cluster", "create", *nodes, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 30) -> None:
        """Until every live node says ``cluster_state:ok`` and three masters have a replica."""
        deadline = time.monotonic() + timeout
        while True:
            live = [p for p in self.ports if p in self.procs]
            ok = all("cluster_state:ok" in _ask(p, "cluster", "info") for p in live)
            masters = self.masters()
            if ok and len(self.replicas()) == len(live) - 3 and len(masters) == 3:
                # and every replica has finished its first sync (WAIT counts only those)
                online = sum(_ask(p, "info", "replication").count("state=online") for p in masters)
                if online == len(live) - 3:
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"the Redis Cluster did not become healthy:\n{self.nodes_table()}")
            time.sleep(0.1)

    def nodes_table(self) -> str:
        for port in self.ports:
            if port in self.procs:
                table = _ask(port, "cluster", "nodes")
                if table:
                    return table
        return ""

    def _with_flag(self, flag: str) -> list[int]:
        found = []
        for line in self.nodes_table().splitlines():
            parts = line.split()
            flags = parts[2].split(",")
            if flag in flags and "fail" not in flags and "fail?" not in flags:
                found.append(int(parts[1].split("@")[0].rsplit(":", 1)[1]))
        return sorted(found)

    def masters(self) -> list[int]:
        return self._with_flag("master")

    def replicas(self) -> list[int]:
        return self._with_flag("slave")

    def master_of(self, key: str) -> int | None:
        """The port of the master serving ``key`` (``None`` while no master does)."""
        slot = key_slot(key.encode())
        for line in self.nodes_table().splitlines():
            parts = line.split()
            if "master" not in parts[2] or "fail" in parts[2]:
                continue
            for span in parts[8:]:
                lo, _, hi = span.partition("-")
                if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                    return int(parts[1].split("@")[0].rsplit(":", 1)[1])
        return None

    def kill(self, port: int) -> None:
        """SIGKILL one node: no shutdown, no last write to disk (a crash)."""
        proc = self.procs.pop(port)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def flush(self) -> None:
        for port in self.masters():
            _ask(port, "flushall")

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            proc.wait(10)
        self.procs.clear()
