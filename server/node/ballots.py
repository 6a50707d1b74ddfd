"""The node's side of secret ballots: keys, the ``ballot`` frames, the reveal.

A secret vote takes two frames from the voter's device (docs/voting.md, docs/protocol.md):

``{"type": "ballot", "name": "claim", "args": {poll, blinded, for?}}``
    The node appends ``ballot.claim`` as the voter (it is a normal, identified command) and,
    once the fold accepted it, signs the *blinded* value the log recorded for that voter
    and replies ``{ok, signed, w}``. A retry (same value) is signed again, identically.

``{"type": "ballot", "name": "deposit", "args": {poll, sealed}}``
    Anonymous as far as the log goes: ``sealed`` is the ballot ``{token, sig, w, choice,
    rev, reveal}`` encrypted on the device to the poll's seal key (server/seal.py). The
    node appends it at once as ``ballot.deposit`` (given by the node, never by a person)
    and replies ``{ok, tracker}`` after the append and the fold: a durable acknowledgement.

After the close and ``GRACE_MS`` (or as soon as every claim has its sealed ballot, in a
poll without changes) a node opens every sealed ballot in a worker thread and appends them
together, sorted by token, as one ``ballot.reveal`` (the first node's counts: every node
would send the same entry under the same cid). The fold checks and tallies them.

Nothing here logs, counts or keeps who deposited what; log lines carry counts, never
people or choices.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .. import blind, polls, seal
from ..errors import BadArgs, Forbidden, HemicycleError, Refused, Unavailable
from ..state import PublicPoll
from ..types import SYSTEM, Actor, Event, arg_str
from . import keys
from .feature import Feature, FrameHandler
from .hub import RoomHub, now_ms

if TYPE_CHECKING:
    from .feature import Host
    from .sessions import Session

log = logging.getLogger(__name__)

BOX_ACTOR = Actor("ballot-box", SYSTEM)
FLUSH_TRIES = 40
FLUSH_BACKOFF = (0.05, 0.5)


@lru_cache(maxsize=256)
def private_key(ballot_key: str, room: str, poll: str, weight: int, bits: int) -> blind.PrivateKey:
    """The signing key of one poll and weight class (cached: nodes in one process share).

    ``ballot_key`` is :func:`ballot_key` of the node's secret, never the secret itself.
    """
    return blind.derive_key(blind.key_seed(ballot_key, room, poll, weight), bits)


def ballot_key(secret: str) -> str:
    """The key that seeds every ballot key: HKDF of the secret for this purpose only
    (``keys.BALLOTS``), as 64 hex digits (docs/voting.md, "Key derivation")."""
    return keys.derive(secret, keys.BALLOTS).hex()


@lru_cache(maxsize=256)
def seal_key(ballot_key: str, room: str, poll: str) -> Any:
    """The private seal key of one poll (server/seal.py), derived, never stored."""
    return seal.derive_key(ballot_key, room, poll)


@dataclass
class RoomBox:
    """One room's secret ballots on one node: the keys it offers and signs with, the sealed
    ballots it appends, the reveals it makes."""

    hub: RoomHub
    secret: str
    """:func:`ballot_key` of the node's secret."""
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    offered: set[str] = field(default_factory=set)
    revealing: set[str] = field(default_factory=set)
    appended: dict[tuple[str, str], int] = field(default_factory=dict)
    """(poll, pid) → new sealed ballots appended through this node: a count, never which."""

    # -- keys -------------------------------------------------------------------------

    def key(self, poll: PublicPoll, weight: int) -> blind.PrivateKey:
        bits = self.hub.state["polls"]["voting"]["key_bits"]
        return private_key(self.secret, self.hub.room, poll["id"], weight, bits)

    def spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def offer_keys(self) -> None:
        """Give every secret draft its keys (each node offers the same; the first counts)."""
        for poll in self.hub.state["polls"]["polls"].values():
            fresh = poll["secret"] and poll["keys"] is None and poll["state"] == "draft"
            tag = f"{poll['id']}:{json.dumps(polls.weight_classes(self.hub.state, poll))}"
            if fresh and tag not in self.offered:
                self.offered.add(tag)
                self.spawn(self._offer(poll["id"], tag))

    async def _offer(self, poll_id: str, tag: str) -> None:
        try:
            poll = self.hub.state["polls"]["polls"][poll_id]
            weights = polls.weight_classes(self.hub.state, poll)
            keys = {}
            for w in weights:  # deriving a key takes a fraction of a second: not on the loop
                key = await asyncio.to_thread(self.key, poll, w)
                keys[str(w)] = key.public.to_wire()
            public = seal.public_hex(self.seal_key(poll_id))
            digest = hashlib.sha256(json.dumps([keys, public], sort_keys=True).encode()).hexdigest()
            outcome = await self.hub.submit(
                BOX_ACTOR,
                "poll.keys",
                {"poll": poll_id, "keys": keys, "seal": public},
                f"keys:{poll_id}:{digest[:24]}",
            )
            if outcome.error is not None and outcome.error["code"] != "unknown_poll":
                log.warning(
                    "room %s: poll %s keys refused: %s",
                    self.hub.room,
                    poll_id,
                    outcome.error["message"],
                )
        except (HemicycleError, KeyError) as exc:
            self.offered.discard(tag)  # try again on the next change
            log.warning("room %s: could not offer keys for %s: %s", self.hub.room, poll_id, exc)

    # -- claims -----------------------------------------------------------------------

    async def claim(self, session: Session, cid: str, args: dict[str, Any]) -> dict[str, Any]:
        checked = polls.check_claim(args)
        outcome = await self.hub.submit(
            session.actor, "ballot.claim", checked, f"{session.actor.pid}:{cid}"
        )
        if outcome.error is not None:
            raise Refused(outcome.error["message"], code=outcome.error["code"])
        poll = polls.get_poll(self.hub.state, checked["poll"])
        person = session.person
        voter = (
            person["pid"]
            if poll["electorate"] == "present"
            else checked["for"] or person.get("org")
        )
        record = poll["voted"].get(voter) if isinstance(voter, str) else None
        # Sign only what the log recorded for this voter: one claim, one signature.
        if record is None or record.get("blinded") != checked["blinded"]:
            raise Refused("this claim is not the one recorded for you", code="already_voted")
        key = self.key(poll, record["w"])
        if (poll["keys"] or {}).get(str(record["w"])) != key.public.to_wire():
            raise Refused("this node's ballot key differs from the room's", code="keys_mismatch")
        signed = key.sign(int(checked["blinded"], 16))
        return {"signed": format(signed, "x"), "w": record["w"]}

    # -- deposits ---------------------------------------------------------------------

    async def deposit(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        """Append one sealed ballot at once and reply after the append and the fold.

        The cid is the tracker (a hash of the sealed bytes): a re-sent ballot, to this node
        or another, is the same command and is counted once; while Redis restarts the
        append is retried with it.

        Nobody can check a sealed ballot before the reveal, so a person may append only as
        many new ones through this node as their claims allow (``SEALED_PER_CLAIM`` each):
        one person's junk cannot crowd out others' ballots. The node counts how many, in
        memory, never which."""
        if session.actor.role not in polls.VOTER_ROLES:
            raise Forbidden("only voters deposit ballots")
        checked = polls.check_deposit(dict(args))
        poll = polls.get_poll(self.hub.state, checked["poll"])
        if not poll["secret"]:
            raise Refused("this is an open ballot: use ballot.cast", code="open_ballot")
        pid = session.actor.pid
        claims = sum(1 for v in poll["voted"].values() if v["by"] == pid)
        key = (checked["poll"], pid)
        tracker = blind.tracker(checked["sealed"])
        again = tracker in poll["ballots"]  # a re-send: always answered, never counted
        if not again and self.appended.get(key, 0) >= claims * polls.SEALED_PER_CLAIM:
            raise Refused("no claim of yours is waiting for another ballot", code="no_claim")
        outcome = await self._submit("ballot.deposit", checked, f"seal:{tracker}")
        if outcome.error is not None:
            raise Refused(outcome.error["message"], code=outcome.error["code"])
        if outcome.events and not outcome.duplicate:
            self.appended[key] = self.appended.get(key, 0) + 1
        return {"tracker": tracker}

    async def _submit(self, name: str, args: dict[str, Any], cid: str) -> Any:
        error: HemicycleError | None = None
        for attempt in range(FLUSH_TRIES):
            try:
                return await self.hub.submit(BOX_ACTOR, name, args, cid)
            except Unavailable as exc:  # Redis restarting: the same cid makes a retry safe
                error = exc
                await asyncio.sleep(min(FLUSH_BACKOFF[1], FLUSH_BACKOFF[0] * 2**attempt))
        assert error is not None
        raise error

    # -- the reveal -------------------------------------------------------------------

    def seal_key(self, poll_id: str) -> Any:
        return seal_key(self.secret, self.hub.room, poll_id)

    def watch(self, poll_id: str) -> None:
        """Reveal ``poll_id`` once it is closed and its grace is over (or every claim has
        its sealed ballot, in a poll without changes)."""
        poll = self.hub.state["polls"]["polls"].get(poll_id)
        if poll is None or not poll["secret"] or poll["state"] != "closed" or poll["sealed"]:
            return
        complete = not poll["change"] and len(poll["ballots"]) >= len(poll["voted"])
        closed = poll["closed_at"] or 0
        delay = 0.0 if complete else max(0.0, (closed + polls.GRACE_MS - now_ms()) / 1000)
        if poll_id in self.revealing and not complete:
            return
        self.revealing.add(poll_id)
        self.spawn(self._reveal_later(poll_id, delay))

    async def _reveal_later(self, poll_id: str, delay: float) -> None:
        try:
            if delay:
                await asyncio.sleep(delay)
            for _ in range(FLUSH_TRIES):
                poll = self.hub.state["polls"]["polls"].get(poll_id)
                if poll is None or poll["sealed"] or poll["state"] != "closed":
                    return
                stored = [(b["sealed"], b["late"]) for b in poll["ballots"].values()]
                args = await asyncio.to_thread(self._open_all, poll_id, stored)
                outcome = await self._submit(
                    "ballot.reveal", args, f"reveal:{poll_id}:{len(stored)}"
                )
                if outcome.error is None:
                    return
                if outcome.error["code"] != "stale_reveal":
                    log.warning(
                        "room %s: the reveal of %s was refused: %s",
                        self.hub.room,
                        poll_id,
                        outcome.error["code"],
                    )
                    return
                await asyncio.sleep(FLUSH_BACKOFF[0])  # a ballot came in meanwhile: again
        except HemicycleError as exc:
            log.warning("room %s: could not reveal %s: %s", self.hub.room, poll_id, exc.code)
        finally:
            self.revealing.discard(poll_id)

    def _open_all(self, poll_id: str, stored: list[tuple[str, bool]]) -> dict[str, Any]:
        return seal.open_all(self.seal_key(poll_id), self.hub.room, poll_id, stored)

    # -- what the fold tells us ---------------------------------------------------------

    def on_events(self, entry_id: str, events: list[Event]) -> None:
        for event in events:
            kind = event["type"]
            if kind in ("poll.created", "poll.updated"):
                self.offer_keys()
            elif event["type"] == "poll.closed" or event["type"] == "ballot.deposited":
                self.watch(event["id"])

    def watch_all(self) -> None:
        for poll_id in list(self.hub.state["polls"]["polls"]):
            self.watch(poll_id)

    async def close(self) -> None:
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=1)
        for task in list(self.tasks):
            task.cancel()


class Ballots(Feature):
    """Secret ballots: the ``ballot`` frames, and a :class:`RoomBox` per room (``running``)."""

    name = "ballots"

    def __init__(self) -> None:
        self.boxes: dict[str, RoomBox] = {}

    def frames(self) -> Mapping[str, FrameHandler]:
        return {"ballot": self.handle_frame}

    @contextlib.asynccontextmanager
    async def in_room(self, node: Host, hub: RoomHub) -> AsyncIterator[None]:
        box = self.boxes[hub.room] = RoomBox(hub, ballot_key(node.settings.secret))
        box.offer_keys()
        box.watch_all()  # a poll closed while no node was up
        try:
            yield
        finally:
            if self.boxes.get(hub.room) is box:
                del self.boxes[hub.room]
            await box.close()

    def folded(self, hub: RoomHub, entry_id: str, events: list[Event]) -> None:
        box = self.boxes.get(hub.room)
        if box is not None:
            box.on_events(entry_id, events)

    async def handle_frame(self, session: Session, data: dict[str, Any]) -> None:
        """``{"type": "ballot", "cid", "name": "claim"|"deposit", "args"}`` → one ``reply``.

        The reply waits for the log (and, for a claim, the signature); it is sent from a
        task so the connection keeps reading the person's other frames meanwhile.
        """
        cid = arg_str(data, "cid", max_len=64)
        name = arg_str(data, "name", max_len=20)
        assert cid is not None
        args = data.get("args")
        if not isinstance(args, dict):
            raise BadArgs("'args' must be a map")
        box = self.boxes.get(session.hub.room)
        if box is None:
            raise Unavailable("this node takes no ballots")
        # The frame already took its token from the person's rate (sessions.py): no second one.
        run: Callable[[], Awaitable[dict[str, Any]]]
        if name == "claim":

            def run() -> Awaitable[dict[str, Any]]:
                return box.claim(session, cid, args)
        elif name == "deposit":

            def run() -> Awaitable[dict[str, Any]]:
                return box.deposit(session, args)
        else:
            raise BadArgs("a ballot frame is a 'claim' or a 'deposit'")

        async def answer() -> None:
            try:
                extra = await run()
            except HemicycleError as exc:
                session.send({"type": "reply", "cid": cid, "ok": False, **exc.to_wire()})
                return
            except Exception:
                log.exception("room %s: a ballot frame failed", session.hub.room)
                session.send(
                    {
                        "type": "reply",
                        "cid": cid,
                        "ok": False,
                        "code": "error",
                        "message": "the ballot could not be taken; try again",
                    }
                )
                return
            session.send({"type": "reply", "cid": cid, "ok": True, **extra})

        box.spawn(answer())


__all__ = ["Ballots", "RoomBox", "private_key"]
