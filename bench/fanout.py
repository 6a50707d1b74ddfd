"""Fan-out of room messages to many WebSocket clients: hemicycle against its peers.

Three servers take the same workload in the same run, one after the other for each client
count (issue 2, "Benchmark"):

* **hemicycle** — two ``hemicycle serve`` nodes (uvicorn) on a ``redis://`` backend. A
  room message is the real path: a moderator's ``notice.post`` (200-byte text) is appended
  to the room log (a Redis Stream), each node reads it, folds it and broadcasts the
  ``events`` frame (msgpack subprotocol) to each of its connections.
* **socketio** — python-socketio ``AsyncServer`` + ``AsyncRedisManager`` on uvicorn, two
  processes on the same Redis; a publisher's ``pub`` event is emitted to a room; clients are
  socketio's own ``AsyncClient`` (websocket transport).
* **bare** — a minimal Starlette app on uvicorn, one process, no Redis: each frame a
  publisher sends is forwarded by ``await ws.send_bytes`` to every subscribed socket. Its
  CPU per delivery is the floor to compare against.

The script starts its own redis-server (free port, temp dir) and every server. Clients run
in separate processes (``--workers``), so client CPU is never counted as server CPU;
publishers run in one more process. Each step sends RATE messages/s for ``--seconds``; a
message carries ``step|seq|send time``, and each client records send → receive latency.
Rates rise (targets in deliveries/s = rate × clients) until p99 > 50 ms, a loss, or the
last target. Server CPU is read from /proc/<pid>/stat (utime + stime) before and after
each step and divided by the deliveries the servers made.

    python bench/fanout.py                 # 100, 500, 1,000 clients, all peers, ~10 min
    python bench/fanout.py --quick         # 20 clients, one rate, 2 s per peer (smoke)
    python bench/fanout.py --clients 500 --peers hemicycle,bare

Run it inside the loopback-only namespace, like the tests:
    unshare -r -n -- sh -c 'ip link set lo up && exec python bench/fanout.py'
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import multiprocessing as mp
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.node.auth import Invites  # noqa: E402
from server.protocol import MSGPACK, pack, unpack  # noqa: E402

ROOM = "plenary"
SECRET = "bench-secret-0123456789abcdefghijklmnopqrstuv"
PEERS = ("hemicycle", "socketio", "bare")
MESSAGE_BYTES = 200
P99_LIMIT_MS = 50.0
TARGETS = (
    1_000,
    2_500,
    5_000,
    10_000,
    20_000,
    30_000,
    40_000,
    60_000,
    80_000,
    100_000,
    130_000,
    160_000,
)
"""Deliveries/s the rate ladder aims at; the message rate of a step is target / clients."""
DRAIN_S = 3.0
"""How long after a step's last send the deliveries may still arrive before counting loss."""
TICKS = os.sysconf("SC_CLK_TCK")


# --- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, proc: subprocess.Popen[bytes], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server on port {port} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def wait_http(url: str, proc: subprocess.Popen[bytes], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url} exited with {proc.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as r:
            if r.status == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"no answer from {url}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Procs:
    """Every process the benchmark starts; ``stop_all`` ends them, last started first."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            argv, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
        log.close()
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        # The servers first, redis (started first) last, so no server sees it vanish.
        for batch in (self.procs[1:], self.procs[:1]):
            for proc in batch:
                if proc.poll() is None:
                    proc.terminate()
            for proc in batch:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


@dataclass
class Peer:
    name: str
    urls: list[str]
    pids: list[int]
    publishers: list[str] = field(default_factory=list)
    """One entry per publisher connection: hemicycle moderator tokens, else URLs."""


def start_redis(procs: Procs) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    port = free_port()
    proc = procs.start(
        "redis",
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(procs.tmp),
            "--dbfilename",
            "fanout.rdb",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
    )
    wait_port(port, proc)
    return proc, f"redis://127.0.0.1:{port}/0"


def start_hemicycle(procs: Procs, redis_url: str, publishers: int) -> Peer:
    urls, pids = [], []
    for name in ("a", "b"):
        port = free_port()
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        env = {
            "HEMICYCLE_SECRET": SECRET,
            "HEMICYCLE_NODE": name,
            "PYTHONPATH": path,
            # the publishers send far more than a person may: lift the per-connection limit
            "HEMICYCLE_COMMAND_RATE": "1000000",
            "HEMICYCLE_COMMAND_BURST": "1000000",
            # every simulated client comes from 127.0.0.1: lift the per-address limit
            "HEMICYCLE_CONN_RATE": "1000000",
            "HEMICYCLE_CONN_BURST": "1000000",
        }
        proc = procs.start(
            f"hemicycle-{name}",
            [
                sys.executable,
                "-m",
                "server.cli",
                "serve",
                "--port",
                str(port),
                "--backend",
                redis_url,
            ],
            env,
        )
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz", proc)
        urls.append(url)
        pids.append(proc.pid)
    invites = Invites(SECRET)
    tokens = [
        invites.mint(room=ROOM, role="moderator", name=f"Publisher {i}") for i in range(publishers)
    ]
    return Peer("hemicycle", urls, pids, tokens)


def start_socketio(procs: Procs, redis_url: str) -> Peer:
    urls, pids = [], []
    for name in ("a", "b"):
        port = free_port()
        proc = procs.start(
            f"socketio-{name}",
            [
                sys.executable,
                __file__,
                "--serve",
                "socketio",
                "--port",
                str(port),
                "--redis",
                redis_url,
            ],
        )
        wait_port(port, proc)
        urls.append(f"http://127.0.0.1:{port}")
        pids.append(proc.pid)
    return Peer("socketio", urls, pids, list(urls))


def start_bare(procs: Procs) -> Peer:
    port = free_port()
    proc = procs.start("bare", [sys.executable, __file__, "--serve", "bare", "--port", str(port)])
    wait_port(port, proc)
    url = f"http://127.0.0.1:{port}"
    return Peer("bare", [url], [proc.pid], [url])


# --- the peers' servers (run as `fanout.py --serve NAME`) -----------------------------------


def serve_socketio(port: int, redis_url: str) -> None:
    import socketio
    import uvicorn

    manager = socketio.AsyncRedisManager(redis_url, channel="bench-fanout")
    sio = socketio.AsyncServer(
        async_mode="asgi", client_manager=manager, logger=False, engineio_logger=False
    )

    @sio.on("join")
    async def join(sid: str) -> None:
        await sio.enter_room(sid, "bench")

    @sio.on("pub")
    async def pub(sid: str, data: str) -> None:
        await sio.emit("msg", data, room="bench")

    uvicorn.run(socketio.ASGIApp(sio), host="127.0.0.1", port=port, log_level="warning")


def serve_bare(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    sockets: set[WebSocket] = set()

    async def subscriber(ws: WebSocket) -> None:
        await ws.accept()
        sockets.add(ws)
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
        finally:
            sockets.discard(ws)

    async def publisher(ws: WebSocket) -> None:
        await ws.accept()
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                data = await ws.receive_bytes()
                for sock in tuple(sockets):
                    with contextlib.suppress(Exception):
                        await sock.send_bytes(data)

    app = Starlette(routes=[WebSocketRoute("/ws", subscriber), WebSocketRoute("/pub", publisher)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# --- clients (worker processes) -------------------------------------------------------------


class Tally:
    """Per step: deliveries, latencies (ms) and the last arrival (wall clock)."""

    def __init__(self) -> None:
        self.steps: dict[int, tuple[list[int], array[float]]] = {}
        """step → ([messages, frames that carried them], latencies)"""
        self.last: dict[int, float] = {}

    def record(self, text: str, first: bool = True) -> None:
        """One message arrived; ``first``: it opens a frame (hemicycle may carry several)."""
        now = time.time()
        step_s, _seq, sent, _ = text.split("|", 3)
        step = int(step_s)
        entry = self.steps.get(step)
        if entry is None:
            entry = self.steps[step] = ([0, 0], array("d"))
        entry[0][0] += 1
        entry[0][1] += first
        entry[1].append((now - float(sent)) * 1000)
        self.last[step] = now


class RawWebSocket(asyncio.Protocol):
    """A lean WebSocket client (RFC 6455) for the measuring side: one ``data_received``
    parses every whole frame in the buffer, so on this 2-core machine the clients take as
    little CPU from the servers as possible, and the same for every peer. It answers pings,
    ignores fragmentation (the servers send each small message as one frame).
    """

    def __init__(self, on_message: Any, path: str, subprotocol: str | None, deflate: bool) -> None:
        self.on_message = on_message
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
        )
        if subprotocol:
            self.request += f"Sec-WebSocket-Protocol: {subprotocol}\r\n"
        if deflate:
            raise SystemExit("--deflate needs --client websockets")
        self.request += "\r\n"
        self.buffer = bytearray()
        self.upgraded = False
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: Any = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.received = 0
        self.frames = 0
        self.lost: Exception | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request.encode())

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, data: bytes, opcode: int = 2) -> None:
        mask = os.urandom(4)
        n = len(data)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
        masked = (int.from_bytes(data, "big") ^ key).to_bytes(n, "big") if n else b""
        self.transport.write(head + mask + masked)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.send((1000).to_bytes(2, "big"), 8)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        self.received += len(data)
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[:12])
            del buf[: end + 4]
            if self.opened.done():  # the connecting side gave up waiting (cancelled)
                self.transport.close()
                return
            if b" 101" not in status:
                self.opened.set_exception(ConnectionError(f"handshake refused: {status!r}"))
                self.transport.close()
                return
            self.upgraded = True
            self.opened.set_result(None)
        pos, size = 0, len(buf)
        while size - pos >= 2:
            opcode, n = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
            start = pos + 2
            if n == 126:
                if size - pos < 4:
                    break
                n, start = int.from_bytes(buf[pos + 2 : pos + 4], "big"), pos + 4
            elif n == 127:
                if size - pos < 10:
                    break
                n, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            if size - start < n:
                break
            payload = bytes(buf[start : start + n])
            pos = start + n
            self.frames += 1
            if opcode in (1, 2):
                self.on_message(payload, self)
            elif opcode == 9:
                self.send(payload, 10)  # pong
            elif opcode == 8:
                self.close_code = int.from_bytes(payload[:2], "big") if payload else 1005
                self.close_reason = payload[2:].decode(errors="replace")
                self.transport.close()
        del buf[:pos]


async def raw_connect(
    url: str, path: str, on_message: Any, subprotocol: str | None = None, deflate: bool = False
) -> RawWebSocket:
    host, port = url.removeprefix("http://").split(":")
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(
        lambda: RawWebSocket(on_message, path, subprotocol, deflate), host, int(port)
    )
    await asyncio.wait_for(proto.opened, 60)
    return proto


async def opened(ws: RawWebSocket, hello: asyncio.Future[None], what: str) -> None:
    """Wait for ``hello`` (welcome, join ack); fail at once if the socket closes first."""
    await asyncio.wait({hello, ws.closed}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if not hello.done():
        raise ConnectionError(
            f"no {what}: "
            + (f"closed ({ws.close_code} {ws.close_reason})" if ws.closed.done() else "timed out")
            + f" after {ws.received} bytes, {ws.frames} frames, error {ws.lost!r}"
        )


async def client_hemicycle(url: str, token: str, tally: Tally, deflate: bool) -> None:
    welcomed = asyncio.get_running_loop().create_future()

    def on_message(frame: bytes, _: RawWebSocket) -> None:
        message = unpack(frame)
        kind = message["type"]
        if kind == "events":
            first = True
            for event in message["events"]:
                if event["type"] == "notice":
                    tally.record(event["text"], first)
                    first = False
        elif kind == "welcome" and not welcomed.done():
            welcomed.set_result(None)

    ws = await raw_connect(url, "/ws?token=" + token, on_message, MSGPACK, deflate)
    await opened(ws, welcomed, "welcome")
    await held(ws)


async def client_bare(url: str, _: str, tally: Tally, deflate: bool) -> None:
    ws = await raw_connect(url, "/ws", lambda frame, _: tally.record(frame.decode()), None, deflate)
    await held(ws)


async def client_socketio_raw(url: str, _: str, tally: Tally, deflate: bool) -> None:
    """Engine.IO 4 / Socket.IO 5 over the websocket transport, spoken by hand: the same
    lean frame reader as the other peers (``--sio-client native`` uses socketio's own)."""
    joined = asyncio.get_running_loop().create_future()

    def on_message(frame: bytes, ws: RawWebSocket) -> None:
        text = frame.decode()
        if text.startswith("42"):
            event, data = json.loads(text[2:])
            if event == "msg":
                tally.record(data)
        elif text == "2":
            ws.send(b"3", 1)  # engine.io pong
        elif text.startswith("0"):
            ws.send(b"40", 1)  # socket.io connect to "/"
        elif text.startswith("40"):
            ws.send(b'421["join"]', 1)  # join, with ack id 1
        elif text.startswith("431") and not joined.done():
            joined.set_result(None)

    ws = await raw_connect(url, "/socket.io/?EIO=4&transport=websocket", on_message, None, deflate)
    await opened(ws, joined, "join ack")
    await held(ws)


async def client_websockets(peer: str, url: str, token: str, tally: Tally, deflate: bool) -> None:
    """The ``websockets`` library as client (``--client websockets``), for comparison."""
    from websockets.asyncio.client import connect

    if peer == "hemicycle":
        ws_url, subprotocols = url.replace("http", "ws", 1) + "/ws?token=" + token, [MSGPACK]
    else:
        ws_url, subprotocols = url.replace("http", "ws", 1) + "/ws", None
    async with connect(
        ws_url,
        subprotocols=subprotocols,  # type: ignore[arg-type]
        max_size=None,
        open_timeout=60,
        ping_interval=None,
        compression="deflate" if deflate else None,
    ) as ws:
        if peer == "hemicycle":
            await ws.recv()  # welcome
        yield_ready()
        async for frame in ws:
            if peer == "hemicycle":
                message = unpack(frame)
                if message["type"] == "events":
                    first = True
                    for event in message["events"]:
                        if event["type"] == "notice":
                            tally.record(event["text"], first)
                            first = False
            else:
                tally.record(frame.decode() if isinstance(frame, bytes) else frame)


async def client_socketio_native(url: str, _: str, tally: Tally, deflate: bool) -> None:
    import socketio

    sio = socketio.AsyncClient(reconnection=False)
    sio.on("msg", tally.record)
    await sio.connect(url, transports=["websocket"], wait_timeout=60)
    try:
        await sio.call("join", timeout=60)
        yield_ready()
        await sio.wait()
    finally:
        await sio.disconnect()


def pick_client(peer: str, kind: str, sio_kind: str) -> Any:
    if peer == "socketio":
        return client_socketio_native if sio_kind == "native" else client_socketio_raw
    if kind == "websockets":
        return lambda url, token, tally, deflate: client_websockets(
            peer, url, token, tally, deflate
        )
    return client_hemicycle if peer == "hemicycle" else client_bare


_ready: list[int] = [0]


def yield_ready() -> None:
    _ready[0] += 1


async def held(ws: Any) -> None:
    """A connected peer: counted ready, then held until the server closes its socket."""
    yield_ready()
    try:
        await ws.closed
    finally:
        ws.close()


def client_worker(
    peer: str, jobs: list[tuple[str, str]], options: dict[str, Any], conn: Any
) -> None:
    """One client process: connect ``jobs`` (url, token), then answer the main process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    async def main() -> None:
        tally = Tally()
        loop = asyncio.get_running_loop()
        run = pick_client(peer, options["client"], options["sio_client"])
        deflate = options["deflate"]
        tasks = []
        for i, (url, token) in enumerate(jobs):
            tasks.append(loop.create_task(run(url, token, tally, deflate)))
            if i % 50 == 49:
                await asyncio.sleep(0.2)  # connect in batches: every hemicycle join goes to all
        deadline = time.monotonic() + 120
        while _ready[0] + sum(t.done() for t in tasks) < len(jobs):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        failed = [t for t in tasks if t.done()]
        errors = sorted({repr(t.exception())[:200] for t in failed if t.exception()})
        conn.send(("ready", _ready[0], len(failed), errors))
        commands: asyncio.Queue[Any] = asyncio.Queue()
        loop.add_reader(conn.fileno(), lambda: commands.put_nowait(conn.recv()))
        while True:
            command = await commands.get()
            kind = command[0]
            if kind == "count":
                entry = tally.steps.get(command[1])
                conn.send(entry[0][0] if entry else 0)
            elif kind == "collect":
                step = command[1]
                counts, latencies = tally.steps.pop(step, ([0, 0], array("d")))
                conn.send(
                    (
                        counts[0],
                        counts[1],
                        latencies.tobytes(),
                        tally.last.pop(step, 0.0),
                        sum(t.done() for t in tasks),
                    )
                )
            elif kind == "cpu":
                conn.send(sum(os.times()[:2]))
            else:
                break
        loop.remove_reader(conn.fileno())
        for i, t in enumerate(tasks):  # leave in batches too, as people do, not all at once
            t.cancel()
            if i % 50 == 49:
                await asyncio.sleep(0.1)
        await asyncio.gather(*tasks, return_exceptions=True)
        conn.send("closed")

    asyncio.run(main())


# --- publishers (one more process) ----------------------------------------------------------


def payload(step: int, seq: int) -> str:
    head = f"{step}|{seq}|{time.time():.6f}|"
    return head + "x" * (MESSAGE_BYTES - len(head))


class Publisher:
    """Connections that send a step's messages; each kind counts what was accepted."""

    async def open(self, peer: Peer) -> None: ...

    async def send(self, i: int, text: str) -> None: ...

    async def settle(self, sent: int) -> dict[str, int]:
        return {"accepted": sent}

    async def close(self) -> None: ...


class HemicyclePublisher(Publisher):
    """Moderators posting ``notice.post`` over the msgpack wire, round-robin over nodes.

    Moderators are in the room too: the notices they receive are deliveries the servers
    made, counted in ``received`` (they go into the CPU-per-delivery denominator).
    """

    async def open(self, peer: Peer) -> None:
        from websockets.asyncio.client import connect

        self.conns = []
        self.prefix = os.urandom(6).hex()  # cids are unique per run: a repeat is ignored
        self.cids = itertools.count()
        self.replies: dict[str, int] = {}
        self.received = 0
        self.readers = []
        for i, token in enumerate(peer.publishers):
            url = peer.urls[i % len(peer.urls)].replace("http", "ws", 1) + "/ws?token=" + token
            ws = await connect(
                url,
                subprotocols=[MSGPACK],  # type: ignore[list-item]
                max_size=None,
                ping_interval=None,
                compression=None,
            )
            await ws.recv()
            self.conns.append(ws)
            self.readers.append(asyncio.create_task(self._read(ws)))

    async def _read(self, ws: Any) -> None:
        with contextlib.suppress(Exception):
            async for frame in ws:
                message = unpack(frame)
                if message["type"] == "reply":
                    key = "accepted" if message["ok"] else message["code"]
                    if message.get("duplicate"):
                        key = "duplicate"
                    self.replies[key] = self.replies.get(key, 0) + 1
                elif message["type"] == "events":
                    self.received += sum(e["type"] == "notice" for e in message["events"])

    async def send(self, i: int, text: str) -> None:
        await self.conns[i % len(self.conns)].send(
            pack(
                {
                    "type": "command",
                    "cid": f"{self.prefix}-{next(self.cids)}",
                    "name": "notice.post",
                    "args": {"text": text},
                }
            )
        )

    async def settle(self, sent: int) -> dict[str, int]:
        deadline = time.monotonic() + 10
        while sum(self.replies.values()) < sent and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        out = dict(self.replies)
        out["unanswered"] = sent - sum(self.replies.values())
        out["publisher_deliveries"] = self.received
        self.replies.clear()
        self.received = 0
        return out

    async def close(self) -> None:
        for ws in self.conns:
            await ws.close()
        for t in self.readers:
            t.cancel()


class SocketioPublisher(Publisher):
    async def open(self, peer: Peer) -> None:
        import socketio

        self.clients = []
        for url in peer.publishers:
            sio = socketio.AsyncClient(reconnection=False)
            await sio.connect(url, transports=["websocket"], wait_timeout=30)
            self.clients.append(sio)

    async def send(self, i: int, text: str) -> None:
        await self.clients[i % len(self.clients)].emit("pub", text)

    async def close(self) -> None:
        for sio in self.clients:
            await sio.disconnect()


class BarePublisher(Publisher):
    async def open(self, peer: Peer) -> None:
        from websockets.asyncio.client import connect

        self.conns = [
            await connect(
                url.replace("http", "ws", 1) + "/pub", ping_interval=None, compression=None
            )
            for url in peer.publishers
        ]

    async def send(self, i: int, text: str) -> None:
        await self.conns[i % len(self.conns)].send(text.encode())

    async def close(self) -> None:
        for ws in self.conns:
            await ws.close()


PUBLISHERS = {"hemicycle": HemicyclePublisher, "socketio": SocketioPublisher, "bare": BarePublisher}


def publisher_worker(peer: Peer, conn: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    async def main() -> None:
        pub = PUBLISHERS[peer.name]()
        await pub.open(peer)
        conn.send("ready")
        loop = asyncio.get_running_loop()
        commands: asyncio.Queue[Any] = asyncio.Queue()
        loop.add_reader(conn.fileno(), lambda: commands.put_nowait(conn.recv()))
        while True:
            command = await commands.get()
            if command[0] != "step":
                break
            _, step, rate, seconds = command
            total = max(1, round(rate * seconds))
            start = time.monotonic()
            for i in range(total):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await pub.send(i, payload(step, i))
            send_s = time.monotonic() - start
            result = await pub.settle(total)
            conn.send({"sent": total, "send_s": send_s, **result})
        loop.remove_reader(conn.fileno())
        await pub.close()

    asyncio.run(main())


# --- one peer at one client count -----------------------------------------------------------


@dataclass
class Step:
    peer: str
    clients: int
    target: int
    rate: float
    seconds: float
    sent: int = 0
    accepted: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    expected: int = 0
    delivered: int = 0
    frames: int = 0
    """Frames that carried the delivered messages (hemicycle: one may carry several)."""
    delivered_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    server_cpu_us: float = 0.0
    """Server processes' CPU per server delivery (clients + publishers that are in the room)."""
    server_cores: float = 0.0
    redis_cpu_us: float = 0.0
    client_cpu_us: float = 0.0
    publisher_deliveries: int = 0
    idle_cores: float = 0.0
    """Server CPU (cores) with the clients connected and nothing sent, before the ladder."""
    ok: bool = False
    broken: bool = False
    """Lost, refused, closed or nothing delivered: not a matter of a late p99."""
    saturated: bool = False
    """Under 90% of the target delivered per second: the peer (or the machine) is full."""
    why: str = ""
    attempt: int = 1


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


def run_peer(
    peer: Peer,
    clients: int,
    targets: list[int],
    seconds: float,
    workers: int,
    redis_pid: int,
    options: dict[str, Any],
    deadline: float,
    retries: int,
    log: Any,
) -> list[Step]:
    """Connect ``clients``, climb the rate ladder, disconnect; one Step per rate tried.

    The ladder ends at saturation (under 90% of the target delivered in time), a loss or
    a refusal; a late p99 alone does not end it, so the peak rate is found too. The first
    step that fails with nothing lost (late or saturated) is run again ``retries`` times
    and the last attempt kept: this machine is shared, and one stall of a neighbour's
    process moves a 4-second p99 or throughput.
    """
    invites = Invites(SECRET)
    jobs = [
        (
            peer.urls[i % len(peer.urls)],
            invites.mint(room=ROOM, role="participant", name=f"Client {i}")
            if peer.name == "hemicycle"
            else "",
        )
        for i in range(clients)
    ]
    ctx = mp.get_context("fork")
    nworkers = max(1, min(workers, clients))
    pipes, procs = [], []
    steps: list[Step] = []
    try:
        t0 = time.monotonic()
        for w in range(nworkers):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(
                target=client_worker,
                args=(peer.name, jobs[w::nworkers], options, theirs),
                daemon=True,
            )
            proc.start()
            pipes.append(mine)
            procs.append(proc)
        connected, failed = 0, 0
        for pipe in pipes:
            if not pipe.poll(180):
                raise RuntimeError(f"{peer.name}: client workers did not connect in time")
            _, ok, bad, errors = pipe.recv()
            connected += ok
            failed += bad
            for e in errors:
                log(f"    client error: {e}")
        log(
            f"  {peer.name}: {connected}/{clients} clients connected in "
            f"{time.monotonic() - t0:.1f} s ({failed} failed)"
        )
        if connected < clients:
            raise RuntimeError(f"{peer.name}: only {connected} of {clients} clients connected")
        time.sleep(1.5 if peer.name == "hemicycle" else 0.5)  # the last joins settle

        pub_mine, pub_theirs = ctx.Pipe()
        pub_proc = ctx.Process(target=publisher_worker, args=(peer, pub_theirs), daemon=True)
        pub_proc.start()
        procs.append(pub_proc)
        if not pub_mine.poll(60):
            raise RuntimeError(f"{peer.name}: publisher did not connect")
        pub_mine.recv()
        time.sleep(0.3)
        idle = measure_idle(peer)
        log(f"  {peer.name}: idle with {clients} clients: {idle:.3f} server cores")

        late = 0
        index = 0
        for target in targets:
            if time.monotonic() > deadline:
                log(f"  {peer.name}: time budget spent; higher rates skipped")
                break
            for attempt in range(1 + (retries if not late else 0)):
                step = Step(
                    peer.name,
                    clients,
                    target,
                    target / clients,
                    seconds,
                    attempt=attempt + 1,
                    idle_cores=idle,
                )
                run_step(step, index, peer, pipes, pub_mine, redis_pid)
                index += 1
                log(f"  {fmt_row(step)}")
                if step.ok or step.broken:
                    break  # a loss or a refusal is not noise: no second try
            steps.append(step)
            late = late + 1 if not step.ok else 0
            if step.saturated or step.broken:
                break  # saturated, lost or refused: the ladder ends
    finally:
        for pipe in pipes:
            with contextlib.suppress(Exception):
                pipe.send(("stop",))
        if "pub_mine" in locals():
            with contextlib.suppress(Exception):
                pub_mine.send(("stop",))
        for pipe in pipes:
            with contextlib.suppress(Exception):
                if pipe.poll(60):
                    pipe.recv()
        if peer.name == "hemicycle":
            settle_hemicycle(peer, log)
        for proc in procs:
            proc.join(15)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
    return steps


def measure_idle(peer: Peer, seconds: float = 2.0) -> float:
    """Server cores used with the clients connected and nothing sent: first wait (up to
    10 s) until the connection storm is over (a half second under 0.05 cores)."""

    def used(window: float) -> float:
        before = sum(cpu_seconds(pid) for pid in peer.pids)
        time.sleep(window)
        return (sum(cpu_seconds(pid) for pid in peer.pids) - before) / window

    deadline = time.monotonic() + 10
    while used(0.5) >= 0.05 and time.monotonic() < deadline:
        pass
    return used(seconds)


def settle_hemicycle(peer: Peer, log: Any) -> None:
    """Wait until both nodes have let every client go (their ``leave`` folded)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        left = 0
        for url in peer.urls:
            with urllib.request.urlopen(url + "/healthz", timeout=5) as r:
                left += json.loads(r.read())["rooms"][ROOM]["connections"]
        if left == 0:
            return
        time.sleep(0.2)
    log(f"  hemicycle: {left} connections still open after 60 s")


def run_step(
    step: Step, index: int, peer: Peer, pipes: list[Any], pub: Any, redis_pid: int
) -> None:
    def ask(command: tuple[Any, ...]) -> list[Any]:
        for pipe in pipes:
            pipe.send(command)
        return [pipe.recv() for pipe in pipes]

    server_before = sum(cpu_seconds(pid) for pid in peer.pids)
    redis_before = cpu_seconds(redis_pid)
    client_before = sum(ask(("cpu",)))
    wall_before = time.time()
    pub.send(("step", index, step.rate, step.seconds))
    if not pub.poll(step.seconds * 3 + 30):
        raise RuntimeError(f"{peer.name}: the publisher did not finish step {index}")
    result = pub.recv()
    step.sent = result["sent"]
    step.accepted = result["accepted"] if "accepted" in result else result["sent"]
    step.refused = {
        k: v
        for k, v in result.items()
        if k not in ("sent", "send_s", "accepted", "publisher_deliveries") and v
    }
    step.publisher_deliveries = result.get("publisher_deliveries", 0)
    step.expected = step.accepted * step.clients
    drain_until = time.monotonic() + DRAIN_S
    while time.monotonic() < drain_until and sum(ask(("count", index))) < step.expected:
        time.sleep(0.1)
    collected = ask(("collect", index))
    server_cpu = sum(cpu_seconds(pid) for pid in peer.pids) - server_before
    redis_cpu = cpu_seconds(redis_pid) - redis_before
    client_cpu = sum(ask(("cpu",))) - client_before
    wall = time.time() - wall_before
    latencies: list[float] = []
    last = wall_before
    closed = 0
    for count, frames, raw, last_at, done in collected:
        step.delivered += count
        step.frames += frames
        values = array("d")
        values.frombytes(raw)
        latencies.extend(values)
        last = max(last, last_at)
        closed += done
    latencies.sort()
    span = max(step.seconds, last - wall_before)
    step.delivered_per_s = step.delivered / span
    step.p50_ms = percentile(latencies, 0.50)
    step.p99_ms = percentile(latencies, 0.99)
    step.max_ms = latencies[-1] if latencies else 0.0
    server_deliveries = step.delivered + step.publisher_deliveries
    if server_deliveries:
        step.server_cpu_us = server_cpu / server_deliveries * 1e6
        step.redis_cpu_us = redis_cpu / server_deliveries * 1e6
        step.client_cpu_us = client_cpu / step.delivered * 1e6 if step.delivered else 0.0
    step.server_cores = server_cpu / wall
    problems = []
    if step.refused:
        problems.append("refused " + ", ".join(f"{k}: {v}" for k, v in step.refused.items()))
    if step.delivered < step.expected:
        problems.append(f"missing {step.expected - step.delivered} {DRAIN_S:g} s after")
    if closed:
        problems.append(f"{closed} clients closed")
    step.broken = bool(problems) or step.delivered == 0
    if step.p99_ms > P99_LIMIT_MS:
        problems.append(f"p99 > {P99_LIMIT_MS:g} ms")
    if step.delivered == 0:
        problems.append("nothing delivered")
    step.saturated = step.delivered_per_s < 0.9 * step.target
    if step.saturated:
        problems.append("saturated")
    step.ok = not problems
    step.why = "; ".join(problems) or "ok"


# --- report ---------------------------------------------------------------------------------


HEADER = (
    "peer",
    "clients",
    "msg/s",
    "delivered/s",
    "delivered/expected",
    "msgs/frame",
    "p50 ms",
    "p99 ms",
    "server µs/deliv",
    "server cores",
    "redis µs/deliv",
    "client µs/deliv",
    "result",
)


def cells(s: Step) -> tuple[str, ...]:
    return (
        s.peer,
        f"{s.clients:,}",
        f"{s.rate:g}",
        f"{s.delivered_per_s:,.0f}",
        f"{s.delivered:,}/{s.expected:,}",
        f"{s.delivered / s.frames:.2f}" if s.frames else "-",
        f"{s.p50_ms:.1f}",
        f"{s.p99_ms:.1f}",
        f"{s.server_cpu_us:.1f}",
        f"{s.server_cores:.2f}",
        f"{s.redis_cpu_us:.1f}" if s.peer != "bare" else "-",
        f"{s.client_cpu_us:.1f}",
        s.why + (f" (try {s.attempt})" if s.attempt > 1 else ""),
    )


def fmt_row(s: Step) -> str:
    return " | ".join(cells(s))


def table(steps: list[Step]) -> str:
    rows = [HEADER, *(cells(s) for s in steps)]
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("---" for _ in HEADER) + "|")
    return "\n".join(lines)


def best(steps: list[Step], peer: str, clients: int) -> Step | None:
    passed = [s for s in steps if s.peer == peer and s.clients == clients and s.ok]
    return max(passed, key=lambda s: s.delivered_per_s, default=None)


def peak(steps: list[Step], peer: str, clients: int) -> Step | None:
    """The most delivered per second with nothing lost, whatever the latency."""
    whole = [
        s
        for s in steps
        if s.peer == peer and s.clients == clients and s.delivered >= s.expected > 0
    ]
    return max(whole, key=lambda s: s.delivered_per_s, default=None)


def median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2] if values else 0.0


def busy_us(s: Step) -> float:
    """Server µs per delivery less what the servers spend idle with the clients connected
    (keepalives, heartbeats, timers): the part that grows with the deliveries."""
    if not s.server_cores:
        return s.server_cpu_us
    return s.server_cpu_us * max(0.0, 1 - s.idle_cores / s.server_cores)


def cpu_ratio(
    steps: list[Step], clients: int, of: str, to: str, cost: Any = None
) -> tuple[float, int]:
    """Median over the rates both peers ran without loss, and where ``of`` sent about one
    frame per message, of (``of`` µs/delivery ÷ ``to`` µs/delivery); ``cost`` picks the
    µs of a step (default: all server CPU)."""
    cost = cost or (lambda s: s.server_cpu_us)
    ratios = []
    for a in steps:
        if a.peer != of or a.clients != clients or a.delivered < a.expected:
            continue
        if a.frames and a.delivered > 1.05 * a.frames:
            continue  # entries coalesced into frames: no longer one send per message
        for b in steps:
            if (
                b.peer == to
                and b.clients == clients
                and b.target == a.target
                and b.delivered >= b.expected
                and cost(b)
            ):
                ratios.append(cost(a) / cost(b))
    return median(ratios), len(ratios)


def summary(steps: list[Step], counts: list[int], peers: list[str]) -> str:
    lines = [
        "| clients | peer | best delivered/s with p99 ≤ 50 ms | peak delivered/s, "
        "nothing lost (its p99) | server µs/delivery (median of steps) | idle server "
        "cores |",
        "|---|---|---|---|---|---|",
    ]
    for n in counts:
        for p in peers:
            b, k = best(steps, p, n), peak(steps, p, n)
            cpu = median(
                [s.server_cpu_us for s in steps if s.peer == p and s.clients == n and s.delivered]
            )
            idle = max((s.idle_cores for s in steps if s.peer == p and s.clients == n), default=0.0)
            lines.append(
                f"| {n:,} | {p} | "
                + (f"{b.delivered_per_s:,.0f} (p99 {b.p99_ms:.1f} ms)" if b else "none")
                + " | "
                + (f"{k.delivered_per_s:,.0f} ({k.p99_ms:.0f} ms)" if k else "none")
                + f" | {cpu:.1f} | {idle:.3f} |"
            )
    if "hemicycle" not in peers:
        return "\n".join(lines)
    lines += [
        "",
        "| clients | hemicycle ÷ socketio, best (p99 ≤ 50 ms) | hemicycle ÷ socketio, "
        "peak | hemicycle µs ÷ bare µs per delivery (same rates, one frame per message; "
        "all CPU, and less idle CPU) |",
        "|---|---|---|---|",
    ]
    for n in counts:
        row = [f"{n:,}"]
        for pick in (best, peak):
            h, s = pick(steps, "hemicycle", n), pick(steps, "socketio", n)
            if "socketio" not in peers:
                row.append("-")
                continue
            row.append(
                f"{h.delivered_per_s / s.delivered_per_s:.2f}×"
                if h and s
                else "hemicycle none"
                if s
                else "socketio none"
                if h
                else "-"
            )
        ratio, matched = cpu_ratio(steps, n, "hemicycle", "bare")
        busy, _ = cpu_ratio(steps, n, "hemicycle", "bare", busy_us)
        row.append(f"{ratio:.2f}, {busy:.2f} less idle (median of {matched})" if matched else "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", default="100,500,1000", help="client counts, comma-separated")
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of one step")
    parser.add_argument(
        "--targets",
        default=",".join(str(t) for t in TARGETS),
        help="deliveries/s of the rate ladder, comma-separated",
    )
    parser.add_argument("--workers", type=int, default=2, help="client processes")
    parser.add_argument(
        "--publishers",
        type=int,
        default=8,
        help="hemicycle publisher connections, spread over both nodes",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=540.0,
        help="seconds after which no new step starts (shared evenly by the "
        "ladders, one per client count and peer)",
    )
    parser.add_argument(
        "--retries", type=int, default=1, help="times a step late on p99 alone is run again"
    )
    parser.add_argument(
        "--client",
        choices=("raw", "websockets"),
        default="raw",
        help="client for hemicycle and bare: a lean frame reader (default) or "
        "the websockets library",
    )
    parser.add_argument(
        "--sio-client",
        choices=("raw", "native"),
        default="raw",
        help="socketio clients: the same lean reader speaking Engine.IO "
        "(default) or socketio.AsyncClient",
    )
    parser.add_argument(
        "--deflate",
        action="store_true",
        help="clients offer permessage-deflate, as browsers do (needs --client websockets)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 20 clients, one rate, 2 s steps"
    )
    parser.add_argument("--json", help="also write every step as JSON to this file")
    parser.add_argument("--logs", help="keep the servers' logs in this directory")
    parser.add_argument("--report", help="print the tables of a run saved with --json")
    parser.add_argument("--serve", choices=("socketio", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve == "socketio":
        serve_socketio(args.port, args.redis)
        return
    if args.serve == "bare":
        serve_bare(args.port)
        return
    if args.quick:
        args.clients, args.seconds, args.targets = "20", 2.0, "400"
    if args.report:
        steps = [Step(**s) for s in json.loads(Path(args.report).read_text())]
        counts = sorted({s.clients for s in steps})
        peers = [p for p in PEERS if any(s.peer == p for s in steps)]
        print(table(steps) + "\n\n" + summary(steps, counts, peers))
        return

    counts = [int(c) for c in args.clients.split(",")]
    peers = [p for p in args.peers.split(",") if p]
    for p in peers:
        if p not in PEERS:
            raise SystemExit(f"unknown peer {p!r}: choose from {', '.join(PEERS)}")
    targets = [int(t) for t in args.targets.split(",")]
    # A TERM (or an INT, which a shell's background job ignores) ends the run through the
    # finally blocks below, so every server, client and redis-server it started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    options = {"client": args.client, "sio_client": args.sio_client, "deflate": args.deflate}
    started = time.monotonic()
    steps: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="hc-fanout-") as tmpdir:
        logdir = Path(args.logs or tmpdir)
        logdir.mkdir(parents=True, exist_ok=True)
        procs = Procs(logdir)
        try:
            redis_proc, redis_url = start_redis(procs)
            running: dict[str, Peer] = {}
            if "hemicycle" in peers:
                running["hemicycle"] = start_hemicycle(procs, redis_url, args.publishers)
            if "socketio" in peers:
                running["socketio"] = start_socketio(procs, redis_url)
            if "bare" in peers:
                running["bare"] = start_bare(procs)
            log(
                f"servers up in {time.monotonic() - started:.1f} s; logs in {logdir}; pids "
                + ", ".join(f"{p.name} {' '.join(map(str, p.pids))}" for p in running.values())
                + f", redis {redis_proc.pid}"
            )
            slices = len(counts) * len(peers)
            for k, n in enumerate(counts):
                for j, name in enumerate(peers):
                    # each ladder gets its share of the budget, plus what earlier ones left
                    deadline = started + args.budget * (k * len(peers) + j + 1) / slices
                    steps += run_peer(
                        running[name],
                        n,
                        targets,
                        args.seconds,
                        args.workers,
                        redis_proc.pid,
                        options,
                        deadline,
                        args.retries,
                        log,
                    )
        finally:
            procs.stop_all()

    cores = os.cpu_count()
    print(
        f"\n## Fan-out: {MESSAGE_BYTES}-byte room messages, {args.seconds:g} s per step, "
        f"{cores} cores (servers, redis, {args.workers} client processes and the publisher "
        f"share them)\n"
    )
    print(table(steps))
    print("\n### Per peer and client count\n")
    print(summary(steps, counts, peers))
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(s) for s in steps], indent=1))


if __name__ == "__main__":
    main()
