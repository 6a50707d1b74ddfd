"""Shared parts of the crowd benchmarks (bench/assembly.py): nodes on any backend, a real
Redis Cluster, Redis command counts, and a light participant.

The participant is what most people in a plenary are: an idle listener of the room's
events. One msgpack WebSocket each (fanout.py's lean ``RawWebSocket``), a ping after
1.5 s of quiet like the pages' heartbeat (static/hc.js ``PING_MS``), commands with replies,
no WebRTC: audio and video cost per listener and per viewer comes from bench/audio.py and
bench/video.py, not from here. It reads only the type of its welcome (the roster it
carries grows with the room; a page decodes it once, a bench process holding a thousand
participants cannot afford to), and decodes a later frame only if it can hold what the
bench counts (captions, published results, replies): a frame's type is read off its first
bytes (``frame_type``). The bench's client processes share the machine's two cores
with the nodes; what a page spends folding the roster is the page's device's, not the
server's, so the bench does not spend it here.
"""

from __future__ import annotations

import asyncio
import sys
import time
from array import array
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fanout import Procs, RawWebSocket, raw_connect, wait_http  # noqa: E402
from fanout import free_port as free_port  # noqa: E402

from server.protocol import MSGPACK, pack, unpack  # noqa: E402

SECRET = "bench-secret-0123456789abcdefghijklmnopqrstuv"
PING_S = 1.5
"""The pages ping after this long without a frame (static/hc.js PING_MS)."""


def percentile(values: Iterable[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# --- servers --------------------------------------------------------------------------------


NODE_WITH_TTL = (
    "import sys; import server.node.app as app; app.HEARTBEAT_TTL = float(sys.argv.pop(1)); "
    "from server.cli import main; sys.exit(main())"
)
"""``python -c`` that runs ``hemicycle`` with another node heartbeat TTL (the first argument)."""


def start_nodes(
    procs: Procs,
    backend: str,
    config: Path,
    count: int,
    env: dict[str, str] | None = None,
    ttl: float | None = None,
) -> tuple[list[str], list[int]]:
    """``count`` ``hemicycle serve`` processes on ``backend``: their http URLs and pids.

    ``ttl``: the seconds a node's heartbeat lives (server/node/app.py ``HEARTBEAT_TTL``),
    instead of the node's own; other nodes retire the connections of a node whose heartbeat
    expired, which a node starved of CPU for that long on a shared machine is taken for."""
    urls, pids = [], []
    start = [sys.executable, "-m", "server.cli"] if ttl is None else [sys.executable, "-c"]
    if ttl is not None:
        start += [NODE_WITH_TTL, str(ttl)]
    for i in range(count):
        port = free_port()
        name = f"node-{chr(ord('a') + i)}"
        proc = procs.start(
            name,
            [*start, "serve", "--port", str(port), "--backend", backend, "--config", str(config)],
            {
                "HEMICYCLE_SECRET": SECRET,
                "HEMICYCLE_NODE": name,
                "PYTHONPATH": str(ROOT),
                # every simulated participant comes from 127.0.0.1: lift the per-address limit
                "HEMICYCLE_CONN_RATE": "1000000",
                "HEMICYCLE_CONN_BURST": "1000000",
                **(env or {}),
            },
        )
        urls.append(f"http://127.0.0.1:{port}")
        pids.append(proc.pid)
    for url, proc in zip(urls, procs.procs[-count:], strict=True):
        wait_http(url + "/healthz", proc, 90)
    return urls, pids


def start_cluster(tmp: Path) -> Any:
    """A real Redis Cluster, three masters and three replicas, with the shipped node config
    (AOF, ``appendfsync always``): tests/redis_cluster.py, the fixtures' own."""
    from tests.redis_cluster import RedisCluster, cluster_port

    ports: list[int] = []
    while len(ports) < 6:
        port = cluster_port()
        if port not in ports:
            ports.append(port)
    cluster = RedisCluster(tmp, ports, config=str(ROOT / "config" / "redis-cluster-node.conf"))
    cluster.start()
    return cluster


def commandstats(ports: Iterable[int]) -> dict[str, int]:
    """Calls per command, summed over the Redis nodes at ``ports`` (INFO commandstats)."""
    import redis

    total: dict[str, int] = {}
    for port in ports:
        client = redis.Redis(host="127.0.0.1", port=port)
        try:
            for name, stats in client.info("commandstats").items():
                cmd = name.removeprefix("cmdstat_")
                total[cmd] = total.get(cmd, 0) + int(stats["calls"])
        finally:
            client.close()
    return total


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """Calls made between two ``commandstats``, without the bench's own INFO calls."""
    out = {k: v - before.get(k, 0) for k, v in after.items() if k != "info"}
    return {k: v for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v > 0}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# --- the light participant ------------------------------------------------------------------


def frame_type(frame: bytes) -> str | None:
    """The ``type`` of a msgpack message whose first key is ``type`` (every frame a node
    sends: server/protocol.py packs the dict in order), read off its first bytes without
    decoding the rest; ``None`` for any other layout (the caller decodes it whole)."""
    # a fixmap/map16/map32 header, then the fixstr "type", then a fixstr value
    at = 1 if 0x80 <= frame[0] <= 0x8F else 3 if frame[0] == 0xDE else 5 if frame[0] == 0xDF else 0
    if not at or frame[at : at + 5] != b"\xa4type":
        return None
    head = frame[at + 5]
    if not 0xA0 <= head <= 0xBF:
        return None
    return frame[at + 6 : at + 6 + (head - 0xA0)].decode()


COUNTED = (b"caption", b"poll.published")
"""The events the participant counts; an ``events`` frame naming neither is not decoded."""


class Participant:
    """One idle listener: welcome time, caption lines seen, replies, published polls."""

    def __init__(self, index: int, url: str, token: str, crowd: Crowd) -> None:
        self.index, self.url, self.token, self.crowd = index, url, token, crowd
        self.ws: RawWebSocket | None = None
        self.welcome_s: float | None = None
        self.welcome_bytes = 0
        self.error = ""
        self.heard = 0.0
        self.pinged = 0.0
        self.lines: dict[str, int] = {}
        """Caption line key → times received."""
        self.published: dict[str, float] = {}
        """Poll id → wall time its ``poll.published`` arrived."""
        self.replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._cid = 0
        self._welcomed: asyncio.Future[None] | None = None

    async def join(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        self._welcomed = loop.create_future()
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                self.ws = await raw_connect(
                    self.url, "/ws?token=" + self.token, self.on_message, MSGPACK
                )
                await asyncio.wait(
                    {self._welcomed, asyncio.ensure_future(self.ws.closed)},
                    return_when=asyncio.FIRST_COMPLETED,
                )
            if self._welcomed.done():
                self.welcome_s = time.perf_counter() - t0
            else:
                self.error = f"closed {self.ws.close_code} {self.ws.close_reason}"
        except TimeoutError:
            self.error = "timed out"
        except OSError as exc:
            self.error = repr(exc)[:120]

    def on_message(self, frame: bytes, _: RawWebSocket) -> None:
        now = time.monotonic()
        self.heard = now
        kind = frame_type(frame)
        if self.welcome_s is None and self._welcomed is not None and not self._welcomed.done():
            if kind == "welcome":
                self.welcome_bytes = len(frame)
                self._welcomed.set_result(None)
            return
        if kind == "events" and not any(word in frame for word in COUNTED):
            return  # presence deltas and the like: a page folds them, this bench counts none
        message = unpack(frame)
        kind = message["type"]
        if kind == "events":
            for event in message["events"]:
                etype = event["type"]
                if etype == "caption":
                    sent, key, _ = event["text"].split("|", 2)
                    self.lines[key] = self.lines.get(key, 0) + 1
                    self.crowd.latencies.append((time.time() - float(sent)) * 1000)
                elif etype == "poll.published":
                    self.published.setdefault(event["id"], time.time())
        elif kind == "reply":
            fut = self.replies.pop(message["cid"], None)
            if fut is not None and not fut.done():
                fut.set_result(message)

    def send(self, message: dict[str, Any]) -> None:
        if self.ws is not None and not self.ws.closed.done():
            self.ws.send(pack(message))

    async def request(self, name: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
        self._cid += 1
        cid = f"b{self._cid}"
        fut = self.replies[cid] = asyncio.get_running_loop().create_future()
        self.send({"type": "command", "cid": cid, "name": name, "args": args})
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self.replies.pop(cid, None)

    def heartbeat(self, now: float) -> None:
        """Ping after ``PING_S`` of quiet, at most once per ``PING_S`` (as the pages do)."""
        if self.ws is None or self.welcome_s is None:
            return
        if now - self.heard > PING_S and now - self.pinged > PING_S:
            self.pinged = now
            self.send({"type": "ping"})

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()


class Crowd:
    """The participants of one client process."""

    def __init__(self, jobs: list[tuple[int, str, str]], heartbeat: bool) -> None:
        self.people = [Participant(i, url, token, self) for i, url, token in jobs]
        self.by_index = {p.index: p for p in self.people}
        self.latencies = array("d")
        self.heartbeat = heartbeat

    async def beat(self) -> None:
        while self.heartbeat:
            now = time.monotonic()
            for p in self.people:
                p.heartbeat(now)
            await asyncio.sleep(0.25)


def worker(
    jobs: list[tuple[int, str, str]],
    heartbeat: bool,
    conn: Any,
    handlers: dict[str, Callable[[Crowd, Any], Any]],
) -> None:
    """A client process: hold a :class:`Crowd` and run the main process's commands on it,
    ``(name, args)`` → ``handlers[name](crowd, args)`` (a coroutine), answering each."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    async def main() -> None:
        crowd = Crowd(jobs, heartbeat)
        beat = asyncio.create_task(crowd.beat())
        loop = asyncio.get_running_loop()
        commands: asyncio.Queue[Any] = asyncio.Queue()
        loop.add_reader(conn.fileno(), lambda: commands.put_nowait(conn.recv()))
        while True:
            name, args = await commands.get()
            if name == "stop":
                break
            try:
                conn.send(("ok", await handlers[name](crowd, args)))
            except Exception as exc:  # the main process reports it
                conn.send(("error", repr(exc)))
        loop.remove_reader(conn.fileno())
        beat.cancel()
        for p in crowd.people:
            p.close()
        await asyncio.sleep(0.2)
        conn.send(("ok", None))

    asyncio.run(main())
