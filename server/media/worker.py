"""One media worker process: listeners' peer connections and the fan-out to them.

A node with ``[media] workers = N`` starts N of these (``python -m server.media.worker
--fd F``, :mod:`server.media.workers`), each with its own event loop and aiortc, and talks
to each over one Unix ``SOCK_SEQPACKET`` socket (one message per packet, in order; the
encoding is :func:`server.protocol.pack`). The node keeps signalling and authorisation; a
worker only does what it is told:

    node ─► ("config", {...})                       ICE addresses and servers (first)
    node ─► ("listen", lid, sdp, lines, lanes, pid)
        ◄── ("answer", lid, sdp) | ("refused", lid, code, message)
    node ─► ("route", lid, room, main, under)       which sources this listener's outlets hear
    node ─► ("close", lid)
    node ─► ("frame", room, source, pub, pid, seq, ts, payload, level, now)
    worker ─► ("ready",) ; ("state", lid, connectionState) ; ("stats", frames, sent, dropped)

A frame comes once per worker and goes to the worker's own :class:`~relay.Source` (the
same ``Source``/``Outlet``/``DirectSender`` path as in the node): ``now`` is the node's
``time.monotonic()`` at arrival, so every worker picks the same floor lanes (the monotonic
clock is one for all processes of a machine). The worker exits when the node's end of the
socket closes, so a node that dies leaves no worker behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import socket
from collections import deque
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from ..protocol import pack, unpack
from . import passthrough
from .relay import Frame, Outlet, Source
from .setup import answer_payload_type, with_opus_fec

log = logging.getLogger(__name__)

STATS_EVERY = 0.1
"""Seconds between the worker's counts to the node (frames taken, packets sent, drops)."""
MAX_MESSAGE = 1 << 16
"""The largest message either side sends (an SDP is at most 20 kB)."""


class Channel:
    """One end of a node–worker socket: whole messages in, whole messages out, in order.

    ``send`` never blocks: what the socket cannot take now waits in a queue flushed when it
    can; past ``limit`` queued messages the newest *frame* is dropped (and counted) rather
    than control messages, which are never dropped.
    """

    def __init__(self, sock: socket.socket, on_message: Any, on_close: Any, limit: int = 2000):
        sock.setblocking(False)
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
        self.sock = sock
        self.on_message = on_message
        self.on_close = on_close
        self.limit = limit
        self.dropped = 0
        self.closed = False
        self._queue: deque[bytes] = deque()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)

    def send(self, data: bytes, *, frame: bool = False) -> None:
        if self.closed:
            return
        if not self._queue:
            try:
                self.sock.send(data)
                return
            except BlockingIOError:
                self._loop.add_writer(self.sock.fileno(), self._writable)
            except OSError:
                self.close()
                return
        if frame and len(self._queue) >= self.limit:
            self.dropped += 1
            return
        self._queue.append(data)

    def _writable(self) -> None:
        queue = self._queue
        try:
            while queue:
                self.sock.send(queue[0])
                queue.popleft()
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        self._loop.remove_writer(self.sock.fileno())

    def _readable(self) -> None:
        for _ in range(256):  # then let the loop run other callbacks
            try:
                data = self.sock.recv(MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.close()
                return
            try:
                message = unpack(data)
            except Exception:
                log.warning("media worker channel: a malformed message was dropped")
                continue
            self.on_message(message)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self.sock.fileno())
            self._loop.remove_writer(self.sock.fileno())
        self.sock.close()
        self.on_close()


class WorkerListener:
    """One listening peer connection in this worker, its outlets and what they hear."""

    def __init__(self, pc: RTCPeerConnection, main: list[Outlet], under: list[Outlet]) -> None:
        self.pc = pc
        self.main = main
        self.under = under
        self.room = ""
        """The room whose sources it hears (set by the first route)."""


class Worker:
    """The worker's state: listeners by id, sources by (room, name)."""

    def __init__(self) -> None:
        self.listeners: dict[int, WorkerListener] = {}
        self.sources: dict[tuple[str, str], Source] = {}
        self.ice: RTCConfiguration = RTCConfiguration(iceServers=[])
        self.channel: Channel | None = None
        self.done = asyncio.Event()
        self.sent = 0
        self.frames = 0
        self.cancelled: set[int] = set()
        """Listeners closed while their answer was still being made."""
        self._tasks: set[asyncio.Task[Any]] = set()

    def send(self, *message: Any) -> None:
        if self.channel is not None:
            self.channel.send(pack(list(message)))

    def on_message(self, message: list[Any]) -> None:
        kind = message[0]
        if kind == "frame":
            self.frame(*message[1:])
        elif kind == "route":
            self.route(*message[1:])
        elif kind == "listen":
            self._spawn(self.listen(*message[1:]))
        elif kind == "close":
            self._spawn(self.close(message[1]))
        elif kind == "config":
            self.configure(message[1])

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def configure(self, config: dict[str, Any]) -> None:
        v4, v6 = list(config["ipv4"]), list(config["ipv6"])
        # The node's own host addresses (read when it started this worker): a worker
        # gathers exactly the candidates the node would (tests: loopback only).
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: (
            (v4 if use_ipv4 else []) + (v6 if use_ipv6 else [])
        )
        self.ice = RTCConfiguration(
            iceServers=[
                RTCIceServer(
                    urls=s["urls"], username=s.get("username"), credential=s.get("credential")
                )
                for s in config["ice_servers"]
            ]
        )

    # -- frames ------------------------------------------------------------------------

    def frame(
        self,
        room: str,
        name: str,
        pub: str,
        pid: str,
        seq: int,
        ts: int,
        payload: bytes,
        level: int | None,
        now: float,
    ) -> None:
        self.frames += 1
        source = self.sources.get((room, name))
        if source is not None:
            self.sent += source.push(Frame(pub, pid, seq, ts, payload, level), now)

    def route(self, lid: int, room: str, main: str | None, under: str | None) -> None:
        listener = self.listeners.get(lid)
        if listener is None:
            return
        listener.room = room
        for outlet in listener.main:
            self._attach(room, outlet, main)
        for outlet in listener.under:
            self._attach(room, outlet, under)

    def _attach(self, room: str, outlet: Outlet, name: str | None) -> None:
        old = outlet.source
        if old is not None and old.name == name:
            return
        if old is not None:
            old.discard(outlet)
            if old.idle:
                self.sources.pop((room, old.name), None)
        outlet.source = None
        if name is not None:
            source = self.sources.get((room, name))
            if source is None:
                source = self.sources[room, name] = Source(name)
            source.add(outlet)
            outlet.source = source

    # -- peer connections --------------------------------------------------------------

    async def listen(self, lid: int, sdp: str, lines: int, lanes: int, pid: str) -> None:
        pc = RTCPeerConnection(self.ice)
        try:
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            except Exception as exc:
                await pc.close()
                self.send("refused", lid, "bad_sdp", f"the offer was refused: {exc}")
                return
            senders = [pc.addTrack(passthrough.EncodedTrack()) for _ in range(lines)]
            await pc.setLocalDescription(await pc.createAnswer())
            answer = pc.localDescription.sdp
            pt = answer_payload_type(answer)
            answer = with_opus_fec(answer, pt)
        except Exception as exc:
            await pc.close()
            self.send("refused", lid, "rtc_failed", f"the connection could not be set up: {exc}")
            return
        outlets = [
            Outlet(pid, passthrough.DirectSender(sender, pt), n % lanes, lanes)
            for n, sender in enumerate(senders)
        ]
        if lid in self.cancelled:  # the node gave up on this offer meanwhile
            self.cancelled.discard(lid)
            await pc.close()
            return
        self.listeners[lid] = WorkerListener(pc, outlets[:lanes], outlets[lanes:])
        pc.on("connectionstatechange", lambda: self.send("state", lid, pc.connectionState))
        self.send("answer", lid, answer)

    async def close(self, lid: int) -> None:
        listener = self.listeners.pop(lid, None)
        if listener is None:
            self.cancelled.add(lid)
            return
        for outlet in [*listener.main, *listener.under]:
            self._attach(listener.room, outlet, None)
        await listener.pc.close()

    async def report(self) -> None:
        while True:
            await asyncio.sleep(STATS_EVERY)
            dropped = 0
            for listener in self.listeners.values():
                for outlet in [*listener.main, *listener.under]:
                    sink = outlet.sink
                    if isinstance(sink, passthrough.DirectSender):
                        dropped += sink.dropped
                        sink.dropped = 0
            if self.channel is not None:
                dropped += self.channel.dropped
                self.channel.dropped = 0
            if self.frames or self.sent or dropped:
                self.send("stats", self.frames, self.sent, dropped)
                self.frames = self.sent = 0

    async def run(self, fd: int) -> None:
        passthrough.self_check()
        # What is alive now (aiortc, av, the modules) lives as long as the process: out of
        # the cyclic GC's reach, so a full collection while listeners join walks only the
        # peer connections (docs/benchmarks.md, "Latency tails").
        gc.collect()
        gc.freeze()
        sock = socket.socket(fileno=fd)
        self.channel = Channel(sock, self.on_message, self.done.set)
        reporter = asyncio.get_running_loop().create_task(self.report())
        self.send("ready")
        await self.done.wait()
        reporter.cancel()
        for lid in list(self.listeners):
            with contextlib.suppress(Exception):
                await self.close(lid)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a hemicycle media worker (started by a node)")
    parser.add_argument("--fd", type=int, required=True, help="the node's socket")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="media worker: %(levelname)s %(message)s")
    asyncio.run(Worker().run(args.fd))


if __name__ == "__main__":
    main()
