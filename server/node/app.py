"""One server process: backends, a hub per room, invites, metrics, heartbeats."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import secrets
from collections.abc import Sequence

from .. import fold, invites, rooms
from ..errors import HemicycleError
from ..types import SYSTEM, Actor
from . import eager
from .auth import Invites
from .backends import Backends, open_backends
from .config import Assembly, Settings
from .feature import Feature, dispatch_table, features_named
from .heartbeat import Heartbeat
from .hub import RoomHub
from .metrics import Metrics
from .throttle import PerKey

log = logging.getLogger(__name__)


SHUTDOWN_GRACE = 15.0
DRAIN_GRACE = 5.0
"""How long a drain waits: for commands in hand to get their replies, then for the people
it closed to come back through another node before their leaves are logged."""
HEARTBEAT_EVERY = 2.0
HEARTBEAT_TTL = 6.0
"""A node silent for this long is dead: the others retire its connections."""
REAPED_KEPT = 100_000
"""Connections retired by this node that it remembers (a few hundred bytes each)."""
LOOP_STALL_LIMIT = 30.0
"""The heartbeat thread stops beating once the event loop has not turned for this long: a
busy node is alive, a node whose loop is stuck for good is not (server/node/heartbeat.py)."""


class Node:
    """Everything one server process holds: the backends, a hub per room, the features.

    Start with ``async with node:``: every hub catches up with its room's log, then each
    feature's ``running(node)`` is entered in list order (left in reverse on the way out,
    or as soon as a later one fails to start).
    """

    def __init__(
        self,
        settings: Settings,
        assembly: Assembly,
        backends: Backends | None = None,
        features: Sequence[Feature] = (),
    ) -> None:
        self.settings = settings
        self.assembly = assembly
        self.name = settings.node or f"node-{secrets.token_hex(3)}"
        self.backends = backends or open_backends(settings.backend)
        self._own_backends = backends is None
        self.metrics = Metrics()
        self.invites = Invites(settings.secret)
        self.addresses = PerKey(settings.conn_rate, settings.conn_burst)
        """New connections per address (web/socket.py)."""
        self.features = list(features)
        self.feature = features_named(self.features)
        self.frames = dispatch_table(self.features)
        features_slices = [f.slice for f in self.features if f.slice]
        self.rules = fold.Rules([rooms.SLICE, *features_slices, invites.SLICE])
        """The node's own slices (the room itself; its invites, last) and its features', in
        the order they fold."""
        self.hubs: dict[str, RoomHub] = {}
        """The rooms this node serves (``settings.rooms``; every room if none is named): only
        these are folded here, so a node of a 20-room assembly holds only its share."""
        self.draining = False
        """Set by :meth:`drain`: new WebSockets are refused (4010), ``/healthz`` says 503."""
        self._drained: asyncio.Future[list[None]] | None = None
        info = {
            "name": assembly.name,
            "languages": list(assembly.languages),
            "floor": assembly.floor,
            "rooms": {r.id: r.title for r in assembly.rooms.values()},
            "members": {m.id: {"name": m.name, "country": m.country} for m in assembly.members},
        }
        self._info = info
        self.served: list[str] = settings.served(assembly)
        """The rooms this node may serve; with ``on_demand`` only those in use are open
        (in ``hubs``), else all of them, from the start."""
        self._opening: dict[str, asyncio.Future[RoomHub]] = {}
        self._parts: dict[str, contextlib.AsyncExitStack] = {}
        """Each open room's feature parts (``Feature.in_room``), closed before its hub."""
        self._idle_since: dict[str, float] = {}
        self._running = False
        self.heartbeat: Heartbeat | None = None
        self._reaped: dict[str, int] = {}
        """Connections of other nodes this node retired (``reap``), and how many times again."""
        if not settings.on_demand:
            for rid in self.served:
                self.hubs[rid] = self._new_hub(rid)
        self._stack = contextlib.AsyncExitStack()

    def _new_hub(self, rid: str) -> RoomHub:
        room = self.assembly.rooms[rid]
        room_info = {
            **self._info,
            "title": room.title,
            "titles": dict(room.titles),
            "floor": room.floor,
            "channels": list(room.channels),
        }
        return RoomHub(
            room,
            self.backends,
            self.metrics,
            node=self.name,
            info=room_info,
            rules=self.rules,
            conns_per_person=self.settings.conns_per_person,
            reconnect_grace=self.settings.reconnect_grace,
        )

    async def __aenter__(self) -> Node:
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self._close_backends)
            await eager.self_check()
            await self.backends.heartbeat(self.name, HEARTBEAT_TTL)
            stack.push_async_callback(self._close_hubs)
            for hub in self.hubs.values():
                await hub.start()
            for feature in self.features:
                await stack.enter_async_context(feature.running(self))
                stack.callback(self._detach, feature)
            stack.push_async_callback(self._close_parts)  # first on the way out
            for hub in list(self.hubs.values()):
                await self._open_parts(hub)
            self._running = True
            beat, close_beat = self.backends.beater()
            stack.callback(close_beat)
            # The first beat connects the thread's client (a cluster client reads the
            # servers' COMMAND table: ~0.1 s of CPU) before the node serves, not in the
            # middle of the first join storm it takes.
            await asyncio.to_thread(beat, self.name, HEARTBEAT_TTL)
            heartbeat = Heartbeat(self.name, beat, HEARTBEAT_EVERY, HEARTBEAT_TTL, LOOP_STALL_LIMIT)
            heartbeat.start()
            stack.push_async_callback(heartbeat.stop)
            self.heartbeat = heartbeat
            watch = asyncio.create_task(self._keep_alive(), name=f"reaper-{self.name}")
            stack.push_async_callback(_cancel, watch)
            self._stack = stack.pop_all()
        return self

    def _detach(self, feature: Feature) -> None:
        for hub in self.hubs.values():
            hub.detach_feature(feature)

    async def _open_parts(self, hub: RoomHub) -> None:
        """Enter each feature's part of ``hub``'s room (in list order), then attach it."""
        async with contextlib.AsyncExitStack() as parts:
            for feature in self.features:
                await parts.enter_async_context(feature.in_room(self, hub))
                parts.callback(hub.detach_feature, feature)
                hub.attach_feature(feature)
            self._parts[hub.room] = parts.pop_all()

    async def _close_parts(self) -> None:
        self._running = False
        for rid in reversed(list(self._parts)):
            await self._parts.pop(rid).aclose()

    async def _close_hubs(self) -> None:
        for hub in list(self.hubs.values()):
            await hub.close()

    async def room(self, rid: str) -> RoomHub | None:
        """The hub of room ``rid`` if this node serves it, opened now if it was not open
        (``on_demand``): its log caught up, its features' parts made; ``None`` for a room
        this node does not serve. Concurrent callers share one opening."""
        hub = self.hubs.get(rid)
        if hub is not None or not self.settings.on_demand or rid not in self.served:
            return hub
        if not self._running or self.draining:
            return None
        opening = self._opening.get(rid)
        if opening is None:
            opening = self._opening[rid] = asyncio.ensure_future(self._open(rid))
            opening.add_done_callback(lambda _: self._opening.pop(rid, None))
        return await asyncio.shield(opening)

    async def _open(self, rid: str) -> RoomHub:
        hub = self._new_hub(rid)
        log.info("node %s: opening room %s", self.name, rid)
        try:
            await hub.start()
            await self._open_parts(hub)
        except BaseException:
            await hub.close()
            raise
        self.hubs[rid] = hub
        return hub

    def _in_use(self, hub: RoomHub) -> bool:
        """What keeps a room open: a connection (or one closed within the reconnect grace,
        or by a drain), a command on its way, a deadline to tick (a poll, a booth's grace),
        a recording made by this node."""
        if hub.sinks or hub.lingering or hub.drained or hub.pending:
            return True
        if self.rules.next_deadline(hub.state) is not None:
            return True
        recording = hub.state.get("audio", {}).get("recording")
        return isinstance(recording, dict) and recording.get("node") == self.name

    async def close_idle(self, now: float | None = None) -> list[str]:
        """Close the rooms opened on demand that have not been in use for ``room_idle``
        seconds (each check of the heartbeat looks); the rooms closed."""
        if not self.settings.on_demand:
            return []
        now = asyncio.get_running_loop().time() if now is None else now
        closed = []
        for rid, hub in list(self.hubs.items()):
            if self._in_use(hub):
                self._idle_since.pop(rid, None)
                continue
            since = self._idle_since.setdefault(rid, now)
            if now - since < self.settings.room_idle:
                continue
            log.info("node %s: closing room %s (unused for %.0f s)", self.name, rid, now - since)
            del self.hubs[rid]
            self._idle_since.pop(rid, None)
            parts = self._parts.pop(rid, None)
            if parts is not None:
                await parts.aclose()
            await hub.close()
            closed.append(rid)
        return closed

    async def _close_backends(self) -> None:
        if self._own_backends:
            await self.backends.close()

    async def drain(self, within: float = DRAIN_GRACE) -> None:
        """Stop taking connections and close the open ones so that their clients move to
        another node at once and resume (docs/protocol.md, "Drain"). Idempotent: a second
        call waits for the first."""
        if self._drained is None:
            log.info("node %s: draining", self.name)
            self.draining = True
            self._drained = asyncio.ensure_future(
                asyncio.gather(*(hub.drain(within) for hub in self.hubs.values()))
            )
        await asyncio.shield(self._drained)  # a cancelled caller leaves the drain running

    async def __aexit__(self, *exc: object) -> None:
        # A node stops within SHUTDOWN_GRACE whatever hangs; what hung is logged.
        try:
            async with asyncio.timeout(SHUTDOWN_GRACE):
                await self._stack.aclose()
        except TimeoutError:
            stacks = io.StringIO()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.print_stack(limit=8, file=stacks)
            log.error(
                "node %s: shutdown took over %.0f s; stopping anyway. Tasks:\n%s",
                self.name,
                SHUTDOWN_GRACE,
                stacks.getvalue(),
            )

    async def _keep_alive(self) -> None:
        # The beat itself is the heartbeat thread's (it must not wait behind this loop);
        # what acts on the others' beats stays here.
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY)
            try:
                await self.reap()
                await self.close_idle()
            except Exception as exc:  # Redis away for a moment: try again next beat
                log.warning("reap failed: %s", exc)

    async def reap(self) -> None:
        """Retire the connections of nodes whose heartbeat expired (they died without
        saying goodbye): append their ``leave`` so people go offline and live interpreters
        enter their grace period. Any node may do it; the ``leave:<conn>`` id makes the
        first one count."""
        while len(self._reaped) > REAPED_KEPT:  # the oldest first (insertion order)
            del self._reaped[next(iter(self._reaped))]
        for hub in self.hubs.values():
            conns = [(p["pid"], c) for p in rooms.people(hub.state).values() for c in p["conns"]]
            owners = {c.split("~", 1)[0] for _, c in conns if "~" in c} - {self.name}
            if not owners:
                continue
            dead = owners - await self.backends.alive(owners)
            for pid, conn in conns:
                if conn.split("~", 1)[0] in dead:
                    # ``leave:<conn>`` makes the first reaper's entry count; a connection
                    # that its node joined again (it was alive after all, server/node/
                    # hub.py ``_retired``) and that is retired once more needs a new id.
                    times = self._reaped.get(conn)
                    cid = f"leave:{conn}" if times is None else f"leave:{conn}:{times + 1}"
                    log.info("retiring connection %s of dead node", conn)
                    with contextlib.suppress(HemicycleError):
                        await hub.submit(
                            Actor("node", SYSTEM), "leave", {"pid": pid, "conn": conn}, cid
                        )
                        self._reaped[conn] = 0 if times is None else times + 1

    def link(self, token: str, room: str) -> str:
        return f"{self.settings.base_url}/r/{room}#t={token}"


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
