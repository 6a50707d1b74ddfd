"""One WebSocket connection: invite check, welcome or resume, command loop, outbound queue.

Order of a connection's life: accept (subprotocol picks the codec) → verify the invite →
wait until the room's replica is ready → welcome (snapshot) or resume (the missed events)
and attach to the hub in the same step, so no event falls between → ``join`` → read
commands until the socket closes → ``leave``.

The outbound queue is bounded. When it is full, ephemeral frames (reactions, captions in
flight, levels) are dropped first; if it is still full, the socket is closed with
``4008`` and a resume hint, so one slow client never holds back the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from ..errors import (
    BadFrame,
    HemicycleError,
    RateLimited,
    Unavailable,
    UnknownType,
    WrongRoom,
)
from ..fold import visible
from ..protocol import Codec, decode, encode
from ..types import SYSTEM, Actor, arg_str
from . import eager
from .hub import join_args
from .throttle import TokenBucket

if TYPE_CHECKING:
    from .hub import RoomHub

log = logging.getLogger(__name__)

MAX_QUEUE = 1024
"""Frames a connection may fall behind by before it is closed with a resume hint."""
CLOSE_BAD_TOKEN = 4001
CLOSE_EXPIRED = 4003
"""The invite expired while the socket was open (a timer at its ``exp``, not a poll)."""
CLOSE_UNKNOWN_ROOM = 4004
CLOSE_REVOKED = 4006
"""The chair revoked the invite (on an open connection, or at connect)."""
CLOSE_NOT_REPRESENTATIVE = 4007
"""The invite names a member organisation but not one of its representatives."""
CLOSE_SLOW = 4008
CLOSE_DISPLACED = 4009
"""The person opened more connections than ``conns_per_person``: the oldest is closed."""
CLOSE_TOO_FAST = 4029
"""The connection kept sending after ``rate_limited`` (past ``rate_strikes``)."""
CLOSE_DRAINING = 4010
"""The node is draining (SIGTERM): reconnect at once, to another node, and resume after the
id the close reason names (docs/protocol.md, "Drain")."""
CLOSE_SHUTDOWN = 1001
CLOSE_GRACE = 10.0

Frames = Mapping[str, Callable[["Session", dict[str, Any]], Awaitable[None]]]
"""Client frame types the node's features handle (``Node.frames``), by exact type."""


def frame_of(message: dict[str, Any], codec: Codec) -> dict[str, Any]:
    data = encode(message, codec)
    if isinstance(data, str):
        return {"type": "websocket.send", "text": data}
    return {"type": "websocket.send", "bytes": data}


class Session:
    def __init__(
        self,
        ws: WebSocket,
        hub: RoomHub,
        claims: dict[str, Any],
        codec: Codec,
        rate: float = 10.0,
        burst: float = 30.0,
        frames: Frames | None = None,
        strikes: float = 30.0,
    ) -> None:
        self.ws = ws
        self.frames: Frames = frames or {}
        self.hub = hub
        self.codec: Codec = codec
        # The node's name leads the connection id, so that if this node dies the others can
        # tell whose connections to retire (app.Node.reap).
        adopted = hub.adopt(claims["pid"])
        conn = adopted or f"{hub.node}~{secrets.token_urlsafe(6)}"
        self.adopted = adopted is not None
        """This connection took over one that closed within the reconnect grace."""
        self.final = False
        """Closed for good (displaced): its leave is logged at once, not after the grace."""
        self.person: dict[str, Any] = {k: v for k, v in claims.items() if k != "exp"}
        self.person["conn"] = conn
        self.actor = Actor(self.person["pid"], self.person["role"], conn)
        self.queue: deque[tuple[bytes | str, str | None, bool]] = deque()
        self.wakeup = asyncio.Event()
        self.idle = False
        """The writer waits for work with an empty queue: ``deliver`` may send at once."""
        self.inflight: asyncio.Task[None] | None = None
        self.inflight_id: str | None = None
        self.sent_id: str | None = None
        self.closing = False
        self.draining = False
        """The node drains: frames read from now on are not handled (the client sends its
        unanswered commands again, same cid, after it reconnects)."""
        self.busy = False
        """A frame read is being handled (a command waiting for its fold and reply)."""
        self._closer: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self.bucket = hub.bucket_for(self.actor.pid, rate, burst)
        """The person's bucket on this node, shared by all their connections here: every
        frame read takes one token."""
        self.strikes = TokenBucket(rate, strikes)
        """Frames refused for rate this connection may still send before it is closed."""
        self.expires = float(claims["exp"])
        """The invite's ``exp`` (Unix seconds): the socket is closed then."""
        self._expiry: asyncio.TimerHandle | None = None

    # -- outbound ------------------------------------------------------------------------

    def deliver(
        self, frame: bytes | str, *, entry_id: str | None = None, ephemeral: bool = False
    ) -> None:
        """Queue one encoded frame; never blocks, never awaits (the hub calls it for all)."""
        if self.closing:
            return
        if self.idle and not self.queue:
            self._send_now(frame, entry_id)
            return
        if len(self.queue) >= MAX_QUEUE:
            metrics = self.hub.metrics
            if ephemeral:
                metrics.queue_drops.labels("ephemeral").inc()
                return
            kept = deque(item for item in self.queue if not item[2])
            metrics.queue_drops.labels("ephemeral").inc(len(self.queue) - len(kept))
            if len(kept) >= MAX_QUEUE:
                self._overflow()
                return
            self.queue = kept
        self.queue.append((frame, entry_id, ephemeral))
        self.wakeup.set()

    def send(self, message: dict[str, Any]) -> None:
        self.deliver(encode(message, self.codec))

    def _send_now(self, frame: bytes | str, entry_id: str | None) -> None:
        """Hand ``frame`` to the socket now, from the caller (the hub's fan-out loop).

        The hot path of a broadcast (``eager.start`` says why it is stepped by hand). If the
        send must wait (the socket's buffer is full: a slow reader), a task finishes it, and
        until then ``idle`` is off, so later frames queue behind it and keep their order.
        """
        if isinstance(frame, str):
            coro = self.ws.send({"type": "websocket.send", "text": frame})
        else:
            coro = self.ws.send({"type": "websocket.send", "bytes": frame})
        try:
            waiting = eager.start(coro)
        except Exception as exc:  # the socket is gone: the reader sees it and ends the session
            log.debug("connection %s: send failed: %r", self.person["conn"], exc)
            self.closing = True
            return
        if waiting is None:
            if entry_id is not None:
                self.sent_id = entry_id
            return
        self.idle = False
        self.inflight = waiting
        self.inflight_id = entry_id
        self.wakeup.set()

    def _overflow(self) -> None:
        self.hub.metrics.slow_closes.inc()
        self.hub.metrics.queue_drops.labels("overflow").inc()
        reason = f"slow consumer; resume after {self.sent_id or '0-0'}"
        log.info("closing slow connection %s (%s)", self.person["conn"], reason)
        self._shut(CLOSE_SLOW, reason)

    def _expire(self) -> None:
        """The invite's ``exp`` passed: say so, then close with 4003 (docs/protocol.md)."""
        if self.closing:
            return
        log.info("closing connection %s: its invite expired", self.person["conn"])
        message = "this invite link has expired; ask the organisers for a new one"
        last = encode({"type": "error", "code": "token_expired", "message": message}, self.codec)
        self._shut(CLOSE_EXPIRED, "invite expired", last)

    def revoked(self) -> None:
        """The chair revoked this invite: say so, then close with 4006 (docs/protocol.md)."""
        if self.closing:
            return
        log.info("closing connection %s: its invite was revoked", self.person["conn"])
        message = "this invite was revoked by the chair; ask the organisers for a new one"
        last = encode({"type": "error", "code": "invite_revoked", "message": message}, self.codec)
        self._shut(CLOSE_REVOKED, "invite revoked", last)

    def displace(self) -> None:
        """A newer connection of the same person went past ``conns_per_person``: close
        this one (the oldest) with 4009; the page does not reconnect on its own."""
        if self.closing:
            return
        log.info("closing connection %s: the person opened a newer one", self.person["conn"])
        self.final = True
        message = "this invite is open in too many windows; the oldest one was closed"
        last = encode({"type": "error", "code": "displaced", "message": message}, self.codec)
        self._shut(CLOSE_DISPLACED, "opened elsewhere", last)

    def _too_fast(self) -> None:
        if self.closing:
            return
        self.hub.metrics.bad_frames.labels("too_fast").inc()
        log.info("closing connection %s: it kept sending past the rate", self.person["conn"])
        message = "too many frames after being told to slow down"
        last = encode({"type": "error", "code": "rate_limited", "message": message}, self.codec)
        self._shut(CLOSE_TOO_FAST, "too fast", last)

    def _shut(self, code: int, reason: str, last: bytes | str | None = None) -> None:
        """Stop delivering, leave the hub, send ``last``, close the socket, stop reading."""
        self.closing = True
        self.queue.clear()
        self.hub.detach(self)
        closer = self._close(code, reason, last)
        self._closer = asyncio.get_running_loop().create_task(closer)
        self._closer.add_done_callback(self._stop_reading)

    async def drain(self, within: float) -> None:
        """Close for a drain: let the command in hand get its reply, send what is queued,
        then close with 4010 naming the last id sent (all within ``within`` seconds)."""
        if self.closing:
            return
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while self.busy and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if self.closing:
            return
        self.closing = True  # nothing more is queued: the client resumes after sent_id
        self.hub.detach(self)
        while (self.queue or self.inflight is not None) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        reason = f"node draining; resume after {self.sent_id or '0-0'}"
        log.info("draining connection %s (%s)", self.person["conn"], reason)
        self.queue.clear()
        self._closer = loop.create_task(self._close(CLOSE_DRAINING, reason))
        self._closer.add_done_callback(self._stop_reading)
        await self._closer

    def _stop_reading(self, _: object) -> None:
        """Closed by the node (slow consumer, expired invite): stop serving its commands."""
        if self._reader is not None:
            self._reader.cancel()

    async def _close(self, code: int, reason: str, last: bytes | str | None = None) -> None:
        # The close frame waits behind what the socket already holds; a client that does
        # not read it within CLOSE_GRACE is dropped instead of being waited for.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_GRACE):
                if last is not None:
                    key = "text" if isinstance(last, str) else "bytes"
                    await self.ws.send({"type": "websocket.send", key: last})
                await self.ws.close(code, reason)

    async def _write(self) -> None:
        send = self.ws.send
        while True:
            if self.inflight is not None:  # a send begun by _send_now had to wait
                await self.inflight
                self.inflight = None
                if self.inflight_id is not None:
                    self.sent_id = self.inflight_id
                continue
            if not self.queue:
                self.wakeup.clear()
                self.idle = True
                try:
                    await self.wakeup.wait()
                finally:
                    self.idle = False
                continue
            frame, entry_id, _ = self.queue.popleft()  # _overflow may have swapped the queue
            if isinstance(frame, str):
                await send({"type": "websocket.send", "text": frame})
            else:
                await send({"type": "websocket.send", "bytes": frame})
            if entry_id is not None:
                self.sent_id = entry_id

    # -- life ----------------------------------------------------------------------------

    async def run(self, after: str | None) -> None:
        hub = self.hub
        await hub.ready.wait()
        if hub.draining:  # accepted just before the drain began, not yet attached
            message = "node draining; reconnect"
            last = encode({"type": "error", "code": "draining", "message": message}, self.codec)
            await self._close(CLOSE_DRAINING, message, last)
            return
        try:
            # Checked against the replica and attached in the same step: a revocation
            # folded after this finds the connection among the hub's sinks.
            hub.admit(self.person)
        except HemicycleError as exc:
            close = CLOSE_REVOKED if exc.code == "invite_revoked" else CLOSE_NOT_REPRESENTATIVE
            last = encode({"type": "error", **exc.to_wire()}, self.codec)
            await self._close(close, exc.message[:120], last)
            return
        self._welcome(after)
        hub.attach(self)
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(max(0.0, self.expires - time.time()), self._expire)
        writer = asyncio.create_task(self._write(), name=f"writer-{self.person['conn']}")
        try:
            refused = await hub.record_invite({**self.person, "exp": int(self.expires)})
            if refused is not None:  # the room holds too many invites: admitted, not listed
                log.warning("room %s: invite not recorded: %s", hub.room, refused["message"])
            join = self._join_args()
            if not (self.adopted and hub.joined_as(join)):  # a reconnect logs nothing
                cid = f"join:{self.person['conn']}"
                if self.adopted:  # the same connection id joins again (a new language …)
                    cid += f":{secrets.token_urlsafe(4)}"
                joined = await hub.submit(Actor("node", SYSTEM), "join", join, cid)
                if joined.error is not None:  # the fold refused what admit() let through
                    last = encode({"type": "error", **joined.error}, self.codec)
                    self._shut(CLOSE_NOT_REPRESENTATIVE, joined.error["message"][:120], last)
            self._reader = asyncio.create_task(self._read(), name=f"reader-{self.person['conn']}")
            if self._closer is not None and self._closer.done():
                self._reader.cancel()  # closed (slow, expired) while joining
            # No polling: _overflow's closer cancels the reader when it is done.
            await asyncio.wait({self._reader})
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                self._reader.result()
        except (WebSocketDisconnect, Unavailable):
            pass
        finally:
            if self._expiry is not None:
                self._expiry.cancel()
            if self._reader is not None:
                self._reader.cancel()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            await hub.leave(self)

    def _join_args(self) -> dict[str, Any]:
        return join_args(self.person)

    def _welcome(self, after: str | None) -> None:
        hub = self.hub
        state = hub.state
        welcome: dict[str, Any] = {
            "type": "welcome",
            "room": hub.room,
            "you": self.person,
            "last": state["meta"]["last"],
            "now": int(time.time() * 1000),
        }
        missed = hub.missed_since(after) if after else None
        if missed is not None and len(missed) < MAX_QUEUE // 2:
            welcome["assembly"] = hub.welcome_info()
            welcome["resumed"] = True
            self.send(welcome)

            for entry_id, events in missed:
                mine = [e for e in events if visible(e, self.person)]
                if mine:
                    self.deliver(
                        encode({"type": "events", "id": entry_id, "events": mine}, self.codec),
                        entry_id=entry_id,
                    )
        else:
            welcome["assembly"] = hub.welcome_info_encoded(self.codec)
            welcome["resumed"] = False
            self.deliver(hub.welcome_frame(welcome, self.person, self.codec))
            self.sent_id = welcome["last"]  # the resume hint until an event is sent

    async def _read(self) -> None:
        receive = self.ws.receive
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if self.draining:
                continue  # not handled: sent again after the reconnect, with the same cid
            frame = message.get("text")
            if frame is None:
                frame = message.get("bytes") or b""
            # Every frame counts, whatever it holds (pings and bad frames too).
            allowed = self.bucket.take()
            if not allowed and not self.strikes.take():
                self._too_fast()
                return
            cid = None
            try:
                data = decode(frame, "json" if isinstance(frame, str) else "msgpack")
                cid = data.get("cid") if isinstance(data.get("cid"), str) else None
                if not allowed:
                    raise RateLimited("too many frames; slow down")
                self.busy = True
                try:
                    await self._handle(data)
                finally:
                    self.busy = False
            except HemicycleError as exc:
                self.hub.metrics.bad_frames.labels(exc.code).inc()
                if cid is not None:
                    self.hub.metrics.commands.labels(exc.code).inc()
                    self.send({"type": "reply", "cid": cid, "ok": False, **exc.to_wire()})
                else:
                    self.send({"type": "error", **exc.to_wire()})

    async def _handle(self, data: dict[str, Any]) -> None:
        kind = data["type"]
        if kind == "command":
            await self._command(data)
        elif kind == "ping":
            self.send({"type": "pong", "now": int(time.time() * 1000), "echo": data.get("echo")})
        else:
            handler = self.frames.get(kind)
            if handler is None:
                raise UnknownType(f"unknown message type {kind!r}")
            await handler(self, data)

    async def _command(self, data: dict[str, Any]) -> None:
        cid = arg_str(data, "cid", max_len=64)
        name = arg_str(data, "name", max_len=64)
        assert cid is not None and name is not None
        room = data.get("room")
        if room is not None and room != self.hub.room:
            raise WrongRoom(f"this connection is for room {self.hub.room!r}, not {room!r}")
        args = data.get("args", {})
        if args is None:
            args = {}
        outcome = await self.hub.submit(self.actor, name, args, f"{self.actor.pid}:{cid}")
        if outcome.error is not None:
            self.hub.metrics.commands.labels(outcome.error["code"]).inc()
            self.send(
                {
                    "type": "reply",
                    "cid": cid,
                    "ok": False,
                    **outcome.error,
                    "duplicate": outcome.duplicate,
                }
            )
        else:
            self.hub.metrics.commands.labels("ok").inc()
            self.send({"type": "reply", "cid": cid, "ok": True, "duplicate": outcome.duplicate})


__all__ = ["Session", "BadFrame", "TokenBucket"]
