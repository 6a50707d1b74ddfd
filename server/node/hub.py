"""One room on one node: the replica, the fold loop and the local connections.

A :class:`RoomHub` tails its room's log, folds each entry into its replica, answers the
local connection that issued the entry, and hands the entry's events to every local
connection allowed to see them — encoded once per codec, not once per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol, cast

from .. import fold, invites
from ..errors import AuthError, HemicycleError, Unavailable
from ..protocol import Codec, Encoded, encode, encode_map, pack, unpack
from ..types import OBSERVER, SYSTEM, Actor, Entry, Event, RoomConfig, State
from .backends import Backends
from .log import id_key
from .metrics import Metrics
from .snapshots import Snapshots
from .throttle import TokenBucket

log = logging.getLogger(__name__)

RECENT = 5_000
"""Folded entries kept for resuming clients; older resumes get a fresh snapshot."""
REPLY_TIMEOUT = 10.0
LEAVE_RETRIES = 20
"""Attempts (backing off to 5 s) to record a leave while the log is unreachable."""
JOIN_FIELDS = ("pid", "name", "role", "org", "country", "lang", "conn", "booth", "pair")


def join_args(person: Mapping[str, Any]) -> dict[str, Any]:
    """The ``join`` arguments of a connection's person (its invite's claims and ``conn``)."""
    return {k: person[k] for k in JOIN_FIELDS if person.get(k) is not None}


class Sink(Protocol):
    """What the hub needs of a connection (sessions.Session is one)."""

    person: dict[str, Any]
    codec: Codec

    def deliver(
        self, frame: bytes | str, *, entry_id: str | None = None, ephemeral: bool = False
    ) -> None: ...

    def revoked(self) -> None:
        """Its invite was revoked: say so and close (4006)."""

    def displace(self) -> None:
        """Close: the person holds more than ``conns_per_person`` connections."""

    async def drain(self, within: float) -> None:
        """The node drains: finish the command in hand, then close (4010)."""


class Feature(Protocol):
    """What a hub calls on the node's features (``server/node/feature.py`` has the rest)."""

    name: str

    def welcome(self, hub: RoomHub) -> Mapping[str, Any]: ...

    def folded(self, hub: RoomHub, entry_id: str, events: list[Event]) -> None: ...

    async def left(self, hub: RoomHub, sink: Sink) -> None: ...


def now_ms() -> int:
    return int(time.time() * 1000)


class RoomHub:
    def __init__(
        self,
        config: RoomConfig,
        backends: Backends,
        metrics: Metrics,
        node: str = "node",
        info: dict[str, Any] | None = None,
        rules: fold.Rules = fold.RULES,
        conns_per_person: int = 3,
        reconnect_grace: float = 0.0,
    ) -> None:
        self.config = config
        self.room = config.id
        self.node = node
        self.backends = backends
        self.metrics = metrics
        self.rules = rules
        """The slices this room folds (the node's: its own and its features')."""
        self.state: State = rules.new_state(config)
        self.sinks: set[Sink] = set()
        self.by_conn: dict[str, Sink] = {}
        self.by_selector: dict[str, set[Sink]] = {}
        """Local connections by the ``to`` selectors that reach them (``fold.selectors``):
        a private event is delivered to the union of its selectors' sets, O(recipients)."""
        self.conns_per_person = conns_per_person
        """A join past it closes the person's oldest connection, on whichever node owns it."""
        self.reconnect_grace = reconnect_grace
        """Seconds a closed connection's ``leave`` waits for the same person to come back
        on this node (``adopt``): a reconnect then logs neither a leave nor a join."""
        self.lingering: dict[str, list[tuple[str, asyncio.TimerHandle]]] = {}
        """Closed connections whose leave is not yet logged, by pid: ``(conn, timer)``."""
        self.closing = False
        self.draining = False
        """The node drains: leaves wait (``drained``) until the person is back elsewhere."""
        self.drained: list[tuple[str, str]] = []
        """``(pid, conn)`` closed by the drain, their leave not yet logged."""
        self.buckets: dict[str, TokenBucket] = {}
        """Frame rate per person on this node (``bucket_for``)."""
        self.recent: deque[tuple[str, list[Event]]] = deque()
        self.recent_base: str | None = None  # id just before recent[0]; None: the log's start
        self.pending: dict[str, asyncio.Future[fold.Outcome]] = {}
        self.unsent: list[tuple[str, list[Event]]] = []
        """Entries folded in this pass over the log, not yet broadcast (see ``flush``)."""
        self.fresh: dict[Sink, int] = {}
        """Connections attached since the last flush → how many entries of ``unsent`` their
        welcome already held: the flush sends each only the entries after those."""
        self._flush_handle: asyncio.Handle | None = None
        self.ready = asyncio.Event()
        self.features: list[Feature] = []
        """The node's running features: told of each fold and each leave, in list order."""
        self.snapshots = Snapshots(self.room, backends.log, rules, rules.new_state(config))
        self._task: asyncio.Task[None] | None = None
        self._retries: set[asyncio.Task[None]] = set()
        self.rejoined: dict[str, str] = {}
        """Local connections retired by another node and joined again: conn → the retiring
        entry's id, which names this connection's own ``leave`` from then on."""
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: int | None = None
        self._bus_task: asyncio.Task[None] | None = None
        self._alike: dict[tuple[Codec, str], Encoded] = {}
        """The parts of the state every person sees alike, encoded (``welcome_frame``)…"""
        self._alike_at: tuple[int, str | None, int] | None = None
        """…for this state object and log position."""
        self.info: dict[str, Any] = info or {
            "title": config.title,
            "titles": dict(config.titles),
            "floor": config.floor,
            "channels": list(config.channels),
        }
        """What every welcome says of the assembly and the room (features add theirs)."""
        self._info_parts: dict[Codec, list[tuple[str, Encoded]]] = {}
        """``info`` encoded, by codec (``welcome_info_encoded``); ``info`` never changes."""

    @property
    def ephemeral_channel(self) -> str:
        return f"hc:{{{self.room}}}:eph"

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        snap = await self.backends.log.load_snapshot(self.room)
        after = None
        if snap is not None:
            after, data = snap
            self.state = fold.from_snapshot(unpack(data))
            self.recent_base = after
            self.snapshots = Snapshots(self.room, self.backends.log, self.rules, unpack(data))
        self._task = asyncio.create_task(self._run(after), name=f"hub-{self.room}")
        subscribed = asyncio.Event()
        self._bus_task = asyncio.create_task(self._run_bus(subscribed), name=f"bus-{self.room}")
        # The bus may fail to subscribe (Redis away at start): then the start fails with it,
        # instead of waiting forever for a subscription that will not come.
        waiting = asyncio.create_task(subscribed.wait())
        await asyncio.wait({waiting, self._bus_task}, return_when=asyncio.FIRST_COMPLETED)
        if not subscribed.is_set():
            waiting.cancel()
            self._bus_task.result()  # raises what stopped the subscription
            raise Unavailable(f"room {self.room}: the bus subscription ended at start")
        # Ready once we have folded what the log held when we started.
        marker = f"ready:{self.node}:{now_ms()}:{id(self)}"
        await self.submit(Actor("node", SYSTEM), "tick", {}, marker)
        self.ready.set()

    async def drain(self, within: float) -> None:
        """Close every connection here with 4010 (each finishes its command in hand), then
        log their leaves once each person is online through another connection (they
        reconnected to another node) or ``within`` seconds have passed: nobody flaps
        offline and back, and a live interpreter never goes ``booth.away``."""
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        sinks = list(self.sinks)
        await asyncio.gather(*(sink.drain(within) for sink in sinks))
        closed = {sink.person["conn"] for sink in sinks}
        while loop.time() < deadline and not closed <= {conn for _, conn in self.drained}:
            await asyncio.sleep(0.01)  # each session's end calls leave() (into drained)
        for pid, items in list(self.lingering.items()):  # closed before the drain began
            for conn, timer in items:
                timer.cancel()
                self.drained.append((pid, conn))
        self.lingering.clear()
        while loop.time() < deadline and not all(map(self._elsewhere, self.drained)):
            await asyncio.sleep(0.05)
        drained, self.drained = self.drained, []
        for pid, conn in drained:
            await self._leave(pid, conn)

    def _elsewhere(self, item: tuple[str, str]) -> bool:
        """Whether ``pid`` is online through a connection of another node than this one."""
        pid, conn = item
        person = self.state["core"]["people"].get(pid)
        if person is None:
            return True
        return any(not c.startswith(self.node + "~") for c in person["conns"] if c != conn)

    async def close(self) -> None:
        self.closing = True
        for sink in list(self.sinks):
            await self.leave(sink)
        for pid, conn in self.drained:
            await self._leave(pid, conn)
        self.drained.clear()
        for pid, items in list(self.lingering.items()):
            for conn, timer in items:
                timer.cancel()
                await self._leave(pid, conn)
        self.lingering.clear()
        if self._timer is not None:
            self._timer.cancel()
        for retry in list(self._retries):
            retry.cancel()
        for task in (self._task, self._bus_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.snapshots.close()

    def attach_feature(self, feature: Feature) -> None:
        self.features.append(feature)

    def detach_feature(self, feature: Feature) -> None:
        if feature in self.features:
            self.features.remove(feature)

    def welcome_info(self) -> dict[str, Any]:
        """The ``assembly`` part of a welcome: the room's info and each feature's part."""
        info = dict(self.info)
        for feature in self.features:
            info.update(feature.welcome(self))
        return info

    def welcome_info_encoded(self, codec: Codec) -> Encoded:
        """:meth:`welcome_info`, encoded: the room's info (which holds the assembly's
        member list, as large as the roll) is encoded once per codec and spliced into every
        welcome; only the features' parts (small, and they change) are encoded each time."""
        extra: dict[str, Any] = {}
        for feature in self.features:
            extra.update(feature.welcome(self))
        static = self._info_parts.get(codec)
        if static is None:
            static = self._info_parts[codec] = [
                (key, Encoded(encode(value, codec), codec)) for key, value in self.info.items()
            ]
        items: list[tuple[str, Any]] = [(k, v) for k, v in static if k not in extra]
        items += extra.items()
        return Encoded(encode_map(items, codec), codec)

    async def _run(self, after: str | None) -> None:
        async for entry_id, raw in self.backends.log.tail(self.room, after):
            try:
                self._fold(entry_id, unpack(raw))
                self.snapshots.add(entry_id, raw)
            except Exception:  # a bug in a reducer must not stop the room
                log.exception("room %s: cannot fold entry %s", self.room, entry_id)

    async def _run_bus(self, subscribed: asyncio.Event) -> None:
        async with self.backends.bus.subscribe(self.ephemeral_channel) as messages:
            subscribed.set()
            async for data in messages:
                try:
                    self._deliver_ephemeral(unpack(data))
                except Exception:
                    log.exception("room %s: bad ephemeral message", self.room)

    def _deliver_ephemeral(self, message: dict[str, Any]) -> None:
        shared: dict[Codec, bytes | str] = {}
        for sink in self.reached([message]) if "to" in message else tuple(self.sinks):
            frame = shared.get(sink.codec)
            if frame is None:
                frame = shared[sink.codec] = encode(message, sink.codec)
            sink.deliver(frame, ephemeral=True)

    def tell_local(self, message: dict[str, Any]) -> None:
        """Send an ephemeral message to this node's connections in this room only (no bus):
        for what each node derives alike on its own (the active speaker)."""
        self._deliver_ephemeral(message)

    async def publish(self, message: dict[str, Any]) -> None:
        """Send an ephemeral message to every node's connections in this room (not logged)."""
        await self.backends.bus.publish(self.ephemeral_channel, pack(message))

    # -- folding -----------------------------------------------------------------------

    def _fold(self, entry_id: str, entry: dict[str, Any]) -> None:
        outcome = self.rules.fold(self.state, entry_id, cast(Entry, entry))
        self.metrics.entries.inc()
        self.recent.append((entry_id, outcome.events))
        if len(self.recent) > RECENT:
            self.recent_base = self.recent.popleft()[0]
        if outcome.events:
            # Sent once this pass over the log is done: the entries that one read brought
            # go to each connection in one frame. Scheduled before the issuer's reply is
            # released below, so a client still gets the events before the reply.
            self.unsent.append((entry_id, outcome.events))
            if self._flush_handle is None:
                self._flush_handle = asyncio.get_running_loop().call_soon(self.flush)
        for event in outcome.events:
            if event["type"] == "person.joined":
                self._displace(event["person"]["conns"])
            elif event["type"] == "person.left" and event["conn"] in self.by_conn:
                self._retired(entry_id, event["pid"], event["conn"])
        waiter = self.pending.pop(entry["cid"], None)
        if waiter is not None and not waiter.done():
            waiter.set_result(outcome)
        if outcome.events:
            self._close_revoked(outcome.events)
            for feature in self.features:
                try:
                    feature.folded(self, entry_id, outcome.events)
                except Exception:  # one feature's bug must not stop the room or the others
                    log.exception(
                        "room %s: feature %s failed after a fold", self.room, feature.name
                    )
        self._schedule_tick()

    def _close_revoked(self, events: list[Event]) -> None:
        """Close this node's connections of an invite the chair just revoked (every node
        folds the same entry, so every node closes its own at once)."""
        gone = {cast(Mapping[str, Any], e)["jti"] for e in events if e["type"] == "invite.revoked"}
        if gone:
            for sink in tuple(self.sinks):
                if sink.person.get("jti") in gone:
                    sink.revoked()

    def refuse_revoked(self, claims: Mapping[str, Any]) -> None:
        """``AuthError(invite_revoked)`` if the chair revoked this invite."""
        if invites.is_revoked(self.state, claims.get("jti")):
            raise AuthError(
                "this invite was revoked by the chair; ask the organisers for a new one",
                code="invite_revoked",
            )

    def admit(self, claims: Mapping[str, Any]) -> None:
        """Refuse an invite the chair revoked (``invite_revoked``) or one that names a
        member organisation but not one of its representatives (``not_representative``)."""
        self.refuse_revoked(claims)
        org = claims.get("org")
        if claims["role"] != OBSERVER and isinstance(org, str):
            reps = invites.representatives(self.state, org)
            invites.check_representative(reps, org, claims["name"])

    async def record_invite(
        self, claims: Mapping[str, Any], by: str | None = None
    ) -> dict[str, str] | None:
        """Record an invite in the room's log unless it is already there (a CLI invite is
        recorded when first used; one minted over HTTP when it is minted); the fold's
        refusal if it refused (``too_many_invites``), else ``None``."""
        jti = claims.get("jti")
        if not isinstance(jti, str) or invites.is_recorded(self.state, jti):
            return None
        args = {
            k: claims.get(k) for k in ("jti", "role", "name", "org", "country", "booth", "lang")
        }
        args["exp"] = int(claims["exp"])
        args["by"] = by
        outcome = await self.submit(Actor("node", SYSTEM), "invite.record", args, f"invite:{jti}")
        return outcome.error

    def flush(self) -> None:
        """Send what was folded and not yet sent, as one ``events`` frame per connection.

        Under load one read of the log brings many entries; each connection then gets one
        frame (the last entry's id, every entry's events in order) instead of one per
        entry: the sends per second stay bounded while the entries per second grow.
        """
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self.unsent:
            return
        unsent, self.unsent = self.unsent, []
        fresh, self.fresh = self.fresh, {}
        last = unsent[-1][0]
        batch = [e for _, events in unsent for e in events]
        if not fresh:  # the common case: everyone here gets the whole batch
            self._broadcast(last, batch)
            return
        # Welcomed during this batch: each gets only what came after its welcome, one frame
        # per distinct start (a storm welcomes many at the same few positions).
        since: dict[int, set[Sink]] = {}
        for sink, held in fresh.items():
            if held < len(unsent) and sink in self.sinks:
                since.setdefault(held, set()).add(sink)
        self._broadcast(last, batch, self.sinks - fresh.keys())
        for held, sinks in since.items():
            self._broadcast(last, [e for _, events in unsent[held:] for e in events], sinks)

    def reached(self, events: list[Any]) -> set[Sink]:
        """The local connections that some private event of ``events`` names (by index)."""
        out: set[Sink] = set()
        for event in events:
            to = event.get("to")
            if isinstance(to, list):
                for key in to:
                    out.update(self.by_selector.get(key, ()))
        return out

    def _broadcast(
        self, entry_id: str, events: list[Event], sinks: set[Sink] | None = None
    ) -> None:
        """Every connection (of ``sinks``, default all) gets the entry's public events; a
        private event costs only the connections its ``to`` names, found in
        ``by_selector``. Each distinct frame is encoded once per codec, however many
        connections get it."""
        everyone = self.sinks if sinks is None else sinks
        public = [e for e in events if "to" not in e]
        private = len(public) < len(events)
        reached = self.reached(events) if private else set()
        if private and sinks is not None:
            reached &= sinks
        only_public = tuple("to" not in e for e in events)
        frames: dict[tuple[Codec, tuple[bool, ...]], bytes | str] = {}

        def frame_for(codec: Codec, picked: tuple[bool, ...]) -> bytes | str:
            frame = frames.get((codec, picked))
            if frame is None:
                mine = [e for e, p in zip(events, picked, strict=True) if p]
                message = {"type": "events", "id": entry_id, "events": mine}
                frame = frames[codec, picked] = encode(message, codec)
            return frame

        sent = 0
        if public:  # the hot path: one frame per codec for everyone the private part missed
            picked = only_public if private else (True,) * len(events)
            shared: dict[Codec, bytes | str] = {}
            targets = tuple(everyone - reached if reached else everyone)
            for sink in targets:
                frame = shared.get(sink.codec)
                if frame is None:
                    frame = shared[sink.codec] = frame_for(sink.codec, picked)
                sink.deliver(frame, entry_id=entry_id)
            sent += len(targets)
        for sink in reached:
            mine = tuple(
                p or fold.visible(e, sink.person) for e, p in zip(events, only_public, strict=True)
            )
            if any(mine):
                sink.deliver(frame_for(sink.codec, mine), entry_id=entry_id)
                sent += 1
        self.metrics.deliveries.inc(sent)

    def _schedule_tick(self) -> None:
        deadline = self.rules.next_deadline(self.state)
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is None:
            return
        delay = max(0.0, (deadline - now_ms()) / 1000)
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timer_at = None
            self._timer = None
            if now_ms() < deadline:  # the loop's clock ran ahead of the wall clock
                self._schedule_tick()
                return
            loop.create_task(self._tick(deadline))

        self._timer = loop.call_later(delay + 0.005, fire)

    async def _tick(self, deadline: int) -> None:
        # One tick per node per deadline: a tick that finds nothing due changes nothing.
        with contextlib.suppress(HemicycleError):
            await self.submit(Actor("node", SYSTEM), "tick", {}, f"tick:{deadline}:{self.node}")

    # -- commands ----------------------------------------------------------------------

    async def submit(self, actor: Actor, name: str, args: Any, cid: str) -> fold.Outcome:
        """Check, append and wait for the fold: the outcome is the authoritative one.

        Raises the :mod:`errors` exception for a command refused before it reached the log
        (unknown, forbidden, bad args) and ``Unavailable`` when the log did not take it or
        the fold did not come back in time (the client retries with the same ``cid``).
        """
        checked = self.rules.check(actor, name, args)
        entry = {"cid": cid, "actor": actor.to_wire(), "cmd": name, "args": checked, "ts": now_ms()}
        waiter = self.pending.get(cid)
        if waiter is None:
            waiter = self.pending[cid] = asyncio.get_running_loop().create_future()
        try:
            await self.backends.log.append(self.room, pack(entry))
            return await asyncio.wait_for(asyncio.shield(waiter), REPLY_TIMEOUT)
        except TimeoutError:
            raise Unavailable("the room log did not confirm the command in time") from None
        finally:
            if not waiter.done() and self.pending.get(cid) is waiter:
                del self.pending[cid]

    # -- connections -------------------------------------------------------------------

    def missed_since(self, after: str) -> list[tuple[str, list[Event]]] | None:
        """The folded entries after ``after``, or ``None`` when they are no longer kept."""
        try:
            key = id_key(after)
        except ValueError:
            return None
        if self.recent_base is not None and key < id_key(self.recent_base):
            return None
        last = self.state["meta"]["last"]
        if last is not None and key > id_key(last):
            return None
        return [(i, ev) for i, ev in self.recent if id_key(i) > key and ev]

    def _displace(self, conns: list[str]) -> None:
        """The person's oldest connections past ``conns_per_person``: each node closes its
        own (a connection id starts with its node's name); the fold is the same everywhere,
        so no message between nodes is needed."""
        for conn in conns[: max(0, len(conns) - self.conns_per_person)]:
            sink = self.by_conn.get(conn)
            if sink is not None:
                sink.displace()

    def bucket_for(self, pid: str, rate: float, burst: float) -> TokenBucket:
        """The frame bucket of ``pid`` on this node, shared by all their connections."""
        bucket = self.buckets.get(pid)
        if bucket is None:
            if len(self.buckets) > 4 * len(self.sinks) + 64:  # forget idle, full buckets
                online = {s.person["pid"] for s in self.sinks}
                for other, b in list(self.buckets.items()):
                    if other not in online and b.full():
                        del self.buckets[other]
            bucket = self.buckets[pid] = TokenBucket(rate, burst)
        return bucket

    def attach(self, sink: Sink) -> None:
        """Add a connection whose welcome was just made from ``state`` (or ``recent``).

        The welcome holds every entry folded so far, the unsent ones too: the next flush
        sends this connection only the entries folded after it. (Flushing here instead, so
        that the others got the unsent entries first, cost a write to every connection per
        welcome: a join storm's writes grew as joins × connections.)"""
        if self.unsent:
            self.fresh[sink] = len(self.unsent)
        self.sinks.add(sink)
        self.by_conn[sink.person["conn"]] = sink
        for key in fold.selectors(sink.person):
            self.by_selector.setdefault(key, set()).add(sink)
        self.metrics.connections.inc()

    def detach(self, sink: Sink) -> None:
        self.fresh.pop(sink, None)
        if sink in self.sinks:
            self.sinks.discard(sink)
            self.by_conn.pop(sink.person["conn"], None)
            for key in fold.selectors(sink.person):
                holders = self.by_selector.get(key)
                if holders is not None:
                    holders.discard(sink)
                    if not holders:
                        del self.by_selector[key]
            self.metrics.connections.dec()

    async def leave(self, sink: Sink) -> None:
        """The connection closed: its features let go at once; its ``leave`` is logged
        after ``reconnect_grace`` unless the person comes back on this node first."""
        self.detach(sink)
        for feature in self.features:
            try:
                await feature.left(self, sink)
            except Exception:
                log.exception("room %s: feature %s failed on a leave", self.room, feature.name)
        pid, conn = sink.person["pid"], sink.person["conn"]
        if self.draining and not self.closing and not getattr(sink, "final", False):
            self.drained.append((pid, conn))
            return
        if self.reconnect_grace > 0 and not self.closing and not getattr(sink, "final", False):
            loop = asyncio.get_running_loop()
            timer = loop.call_later(self.reconnect_grace, self._linger_ended, pid, conn)
            self.lingering.setdefault(pid, []).append((conn, timer))
            return
        await self._leave(pid, conn)

    def adopt(self, pid: str) -> str | None:
        """A connection of ``pid`` opens: hand it the id of one of their connections that
        closed within the grace (the latest), still online in the room, or ``None``."""
        items = self.lingering.get(pid)
        while items:
            conn, timer = items.pop()
            timer.cancel()
            if not items:
                del self.lingering[pid]
            person = self.state["core"]["people"].get(pid)
            if person is not None and conn in person["conns"]:
                return conn
        return None

    def joined_as(self, args: Mapping[str, Any]) -> bool:
        """Whether the room already holds this join (an adopted connection, same record)."""
        person = self.state["core"]["people"].get(args["pid"])
        if person is None or args["conn"] not in person["conns"]:
            return False
        fields = ("name", "role", "org", "country", "lang", "booth", "pair")
        return all(person.get(k) == args.get(k) for k in fields)

    def _linger_ended(self, pid: str, conn: str) -> None:
        items = self.lingering.get(pid, [])
        for item in items:
            if item[0] == conn:
                items.remove(item)
                break
        else:
            return
        if not items:
            self.lingering.pop(pid, None)
        task = asyncio.get_running_loop().create_task(self._leave(pid, conn))
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    def _retired(self, entry_id: str, pid: str, conn: str) -> None:
        """Another node logged the leave of a connection this node still holds: it took
        this node for dead (no heartbeat within the TTL: a stopped process, a partition).
        Join it again at once, as it was: the person is back online, a live interpreter's
        grace ends (``booth.back``) before it takes the air, and nobody had to reconnect."""
        if self.closing:
            return
        log.warning("room %s: %s was retired by another node; joining it again", self.room, conn)
        self.rejoined[conn] = entry_id  # from now on its own leave needs a cid of its own
        task = asyncio.get_running_loop().create_task(self._rejoin(pid, conn, entry_id))
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def _rejoin(self, pid: str, conn: str, entry_id: str) -> None:
        delay = 0.2
        for _ in range(LEAVE_RETRIES):
            sink = self.by_conn.get(conn)
            person = self.state["core"]["people"].get(pid)
            if sink is None or (person is not None and conn in person["conns"]):
                return  # closed meanwhile (its own leave follows), or already back
            try:
                cid = f"join:{conn}:back:{entry_id}"
                await self.submit(Actor("node", SYSTEM), "join", join_args(sink.person), cid)
                return
            except Unavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except HemicycleError as exc:  # the fold refuses what it took before: say so
                log.warning("room %s: could not join %s again: %s", self.room, conn, exc)
                return

    async def _leave(self, pid: str, conn: str) -> None:
        args = {"pid": pid, "conn": conn}
        cid = f"leave:{conn}"
        if conn in self.rejoined:  # ``leave:<conn>`` is taken by the retirement
            cid += f":after:{self.rejoined.pop(conn)}"
        try:
            await self.submit(Actor("node", SYSTEM), "leave", args, cid)
        except Unavailable:
            # The log is away (Redis restarting): keep trying in the background, or the
            # person would stay online with a dead connection. The cid makes repeats no-ops.
            task = asyncio.get_running_loop().create_task(self._retry_leave(args, cid))
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)
        except HemicycleError:
            pass

    async def _retry_leave(self, args: dict[str, Any], cid: str) -> None:
        delay = 0.2
        for _ in range(LEAVE_RETRIES):
            await asyncio.sleep(delay)
            try:
                await self.submit(Actor("node", SYSTEM), "leave", args, cid)
                return
            except Unavailable:
                delay = min(delay * 2, 5.0)
            except HemicycleError:
                return
        log.warning("room %s: could not record that %s left", self.room, args["conn"])

    def view_for(self, person: dict[str, Any]) -> State:
        return self.rules.view(self.state, person)

    def _once(self, codec: Codec, name: str, value: Any) -> Encoded:
        """``value`` (a part everyone sees alike) encoded once per codec and log position."""
        encoded = self._alike.get((codec, name))
        if encoded is None:
            encoded = self._alike[codec, name] = Encoded(encode(value, codec), codec)
        return encoded

    def welcome_frame(
        self, head: dict[str, Any], person: dict[str, Any], codec: Codec
    ) -> bytes | str:
        """``head`` (the connection's own fields) with ``state``: ``person``'s view, encoded.

        A join storm welcomes many people at one log position: the parts of the state
        everyone sees alike (the roster above all, which grows with the storm) are encoded
        once per codec and position and spliced into every welcome made there, instead of
        copied and encoded per connection; the parts that depend on the person are made
        for each. It decodes exactly as ``encode({**head, "state": view_for(person)})``.
        """
        state = self.state
        at = (id(state), state["meta"]["last"], state["meta"]["n"])
        if self._alike_at != at:
            self._alike_at, self._alike = at, {}
        parts: list[tuple[str, Any]] = []
        for name, value, alike in self.rules.view_parts(state, person):
            if alike:
                value = self._once(codec, name, value)
            elif isinstance(value, fold.Parts):  # a slice with parts everyone sees alike
                sub = [(k, self._once(codec, f"{name}.{k}", v) if a else v) for k, v, a in value]
                value = Encoded(encode_map(sub, codec), codec)
            parts.append((name, value))
        view = Encoded(encode_map(parts, codec), codec)
        return encode_map([*head.items(), ("state", view)], codec)
