"""The node's media workers: listeners' peer connections spread over N processes.

``[media] workers = N`` (default: one per core; 0: listeners stay in the node's process).
:class:`WorkerPool` starts N :mod:`server.media.worker` processes, each joined to the node
by one Unix ``SOCK_SEQPACKET`` socket pair. The node keeps the signalling and every
decision (the fold decides who may listen to what, ``audio.routes`` what each hears); a
worker holds the peer connections it is given and fans frames out to them:

- a listen offer goes to the worker with the fewest listeners, which answers
  (:meth:`WorkerPool.listen`); the node hands the page a :class:`RemotePeer` that looks,
  to :mod:`signalling`, like a peer connection (``connectionState``, ``on``, ``close``);
- the room tells each remote listener what it hears (:meth:`RemotePeer.route`);
- a frame (the publisher's, or another node's from the bus) is packed once and sent once
  to each worker that has a listener of its source (:meth:`WorkerPool.push`);
- a worker that dies is started again; its listeners' peer connections count as failed, so
  their pages are told (``rtc.closed``) and offer again, landing on a live worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aioice.ice

from ..errors import BadArgs, Unavailable
from ..protocol import pack
from .relay import Frame
from .setup import allowed_cores
from .worker import Channel

if TYPE_CHECKING:
    from ..node.metrics import Metrics

log = logging.getLogger(__name__)


WORKER_ARGV = [sys.executable, "-m", "server.media.worker"]
"""How a worker is started (``--fd F`` is added); bench/audio.py starts an instrumented one."""
READY_WITHIN = 60.0
"""Seconds a starting worker may take (importing aiortc) before offers are refused."""
ANSWER_WITHIN = 30.0
RESTART_PAUSE = 0.5
"""Seconds between a worker's death and its replacement (a crash loop stays slow)."""
STOP_WITHIN = 1.0
"""Seconds a worker has to exit by itself when the node stops, before SIGTERM."""
ROOT = Path(__file__).resolve().parents[2]


class RemotePeer:
    """A listener's peer connection held by a worker, as signalling sees it."""

    def __init__(self, link: WorkerLink, lid: int, room: str) -> None:
        self.link = link
        self.lid = lid
        self.room = room
        self.connectionState = "new"
        self.heard: tuple[str | None, str | None] = (None, None)
        self._handlers: list[Callable[[], None]] = []

    def on(self, event: str, handler: Callable[[], None]) -> None:
        if event == "connectionstatechange":
            self._handlers.append(handler)

    def state(self, value: str) -> None:
        if value != self.connectionState:
            self.connectionState = value
            for handler in list(self._handlers):
                handler()

    def route(self, main: str | None, under: str | None) -> None:
        """Hear ``main`` on the listening tracks and ``under`` (or nothing) underneath."""
        if (main, under) == self.heard:
            return
        self.link.unuse(self.room, self.heard)
        self.heard = (main, under)
        self.link.use(self.room, self.heard)
        self.link.send("route", self.lid, self.room, main, under)

    def forget(self) -> None:
        """Stop routing frames for this listener (before :meth:`close`)."""
        self.link.unuse(self.room, self.heard)
        self.heard = (None, None)

    async def close(self) -> None:
        self.forget()
        if self.link.listeners.pop(self.lid, None) is not None:
            self.link.send("close", self.lid)
        self.state("closed")


class WorkerLink:
    """One worker process and its socket."""

    def __init__(self, slot: int, metrics: Metrics, core: int | None = None) -> None:
        self.slot = slot
        self.metrics = metrics
        self.core = core
        """The core this worker is pinned to (``[media] pin_workers``), or ``None``."""
        self.proc: asyncio.subprocess.Process | None = None
        self.channel: Channel | None = None
        self.ready = asyncio.Event()
        self.listeners: dict[int, RemotePeer] = {}
        self.answers: dict[int, asyncio.Future[list[Any]]] = {}
        self.uses: Counter[tuple[str, str]] = Counter()
        """(room, source) → how many of this worker's listeners' track groups hear it."""
        self.pushed = 0
        self.taken = 0
        """Frames sent to this worker, and frames it has said it fanned out."""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def start(self, config: dict[str, Any]) -> None:
        node_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *WORKER_ARGV,
                "--fd",
                str(worker_end.fileno()),
                pass_fds=(worker_end.fileno(),),
                cwd=str(ROOT),
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            worker_end.close()
        if self.core is not None:
            try:
                os.sched_setaffinity(self.proc.pid, {self.core})
            except OSError as exc:  # a cpuset changed under us: run unpinned, say so
                log.warning("media worker %d: cannot pin to core %d: %s", self.slot, self.core, exc)
        if self.ready.is_set():  # keep an unset one: offers may be waiting on it (listen)
            self.ready = asyncio.Event()
        self.channel = Channel(node_end, self.on_message, lambda: None)
        self.send("config", config)

    def send(self, *message: Any) -> None:
        if self.channel is not None:
            self.channel.send(pack(list(message)))

    def on_message(self, message: list[Any]) -> None:
        kind = message[0]
        if kind == "state":
            peer = self.listeners.get(message[1])
            if peer is not None:
                peer.state(message[2])
        elif kind in ("answer", "refused"):
            future = self.answers.pop(message[1], None)
            if future is not None and not future.done():
                future.set_result(message)
        elif kind == "stats":
            self.taken += message[1]
            self.metrics.audio_out.inc(message[2])
            if message[3]:
                self.metrics.audio_listener_drops.inc(message[3])
        elif kind == "ready":
            self.ready.set()

    def use(self, room: str, heard: tuple[str | None, str | None]) -> None:
        for name in heard:
            if name is not None:
                self.uses[room, name] += 1

    def unuse(self, room: str, heard: tuple[str | None, str | None]) -> None:
        for name in heard:
            if name is not None:
                self.uses[room, name] -= 1
                if self.uses[room, name] <= 0:
                    del self.uses[room, name]

    def died(self) -> None:
        """The process ended: its peer connections failed, its answers will not come."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        self.ready = asyncio.Event()
        for future in self.answers.values():
            if not future.done():
                future.set_exception(Unavailable("the media worker stopped; offer again"))
        self.answers.clear()
        peers, self.listeners = list(self.listeners.values()), {}
        self.uses.clear()
        self.pushed = self.taken = 0
        for peer in peers:
            peer.heard = (None, None)
            peer.state("failed")


class WorkerPool:
    """N media worker processes of one node. ``async with`` it; then :meth:`listen`."""

    def __init__(
        self,
        count: int,
        metrics: Metrics,
        ice_servers: list[dict[str, Any]],
        pin: bool = True,
    ) -> None:
        if count < 1:
            raise ValueError(f"a worker pool has at least one worker, not {count}")
        cores = sorted(allowed_cores()) if pin else []
        self.links = [
            WorkerLink(slot, metrics, cores[slot % len(cores)] if cores else None)
            for slot in range(count)
        ]
        self.ice_servers = ice_servers
        self.restarts = 0
        self._lids = 0
        self._closing = False
        self._watchers: list[asyncio.Task[None]] = []

    def _config(self) -> dict[str, Any]:
        get = aioice.ice.get_host_addresses
        return {
            "ipv4": get(use_ipv4=True, use_ipv6=False),
            "ipv6": get(use_ipv4=False, use_ipv6=True),
            "ice_servers": self.ice_servers,
        }

    async def __aenter__(self) -> WorkerPool:
        loop = asyncio.get_running_loop()
        for link in self.links:
            await link.start(self._config())
            self._watchers.append(
                loop.create_task(self._watch(link), name=f"media-worker-{link.slot}")
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing = True
        for task in self._watchers:
            task.cancel()
        for link in self.links:
            if link.channel is not None:
                link.channel.close()  # the worker exits when its socket closes
        for link in self.links:
            proc = link.proc
            if proc is None or proc.returncode is not None:
                continue
            # Give it a moment to close its peer connections; then it holds nothing to save.
            try:
                await asyncio.wait_for(proc.wait(), STOP_WITHIN)
            except TimeoutError:
                proc.terminate()
                await proc.wait()

    async def _watch(self, link: WorkerLink) -> None:
        """Start ``link``'s worker again whenever it ends."""
        while True:
            assert link.proc is not None
            code = await link.proc.wait()
            if self._closing:
                return
            log.warning(
                "media worker %d (pid %s) ended with %s; %d listener(s) must reconnect",
                link.slot,
                link.pid,
                code,
                len(link.listeners),
            )
            link.died()
            self.restarts += 1
            await asyncio.sleep(RESTART_PAUSE)
            await link.start(self._config())

    def backlog(self) -> int:
        """Frames sent to the workers that they have not yet reported as fanned out."""
        return sum(link.pushed - link.taken for link in self.links)

    def pids(self) -> list[int | None]:
        return [link.pid for link in self.links]

    def sources(self, room: str) -> set[str]:
        """The sources of ``room`` that some worker's listener hears."""
        return {name for link in self.links for (r, name) in link.uses if r == room}

    def push(self, room: str, name: str, frame: Frame, now: float) -> None:
        """Send ``frame`` of source ``name`` once to each worker with a listener of it."""
        data = None
        key = (room, name)
        for link in self.links:
            if key in link.uses and link.channel is not None:
                if data is None:
                    data = pack(
                        [
                            "frame",
                            room,
                            name,
                            frame.pub,
                            frame.pid,
                            frame.seq,
                            frame.ts,
                            frame.payload,
                            frame.level,
                            now,
                        ]
                    )
                link.channel.send(data, frame=True)
                link.pushed += 1

    async def listen(
        self, room: str, pid: str, sdp: str, lines: int, lanes: int
    ) -> tuple[RemotePeer, str]:
        """A listening peer connection on the worker with the fewest listeners, and its answer."""
        # The fewest listeners, ready or not: one starting (or restarting) takes its share
        # as soon as it is up, rather than everyone piling onto the first one ready.
        link = min(self.links, key=lambda k: len(k.listeners))
        try:
            await asyncio.wait_for(link.ready.wait(), READY_WITHIN)
        except TimeoutError:
            raise Unavailable("no media worker is running; try again") from None
        self._lids += 1
        lid = self._lids
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        link.answers[lid] = future
        peer = RemotePeer(link, lid, room)
        link.listeners[lid] = peer
        link.send("listen", lid, sdp, lines, lanes, pid)
        try:
            reply = await asyncio.wait_for(future, ANSWER_WITHIN)
        except BaseException:
            link.answers.pop(lid, None)
            await peer.close()
            raise
        if reply[0] == "refused":
            link.listeners.pop(lid, None)
            code, message = reply[2], reply[3]
            if code == "bad_sdp":
                raise BadArgs(message, code=code)
            raise Unavailable(message, code="rtc_failed")
        return peer, reply[2]
