"""The node's side of secret ballots: signing keys, the ``ballot`` frames, the ballot box.

A secret vote takes two frames from the voter's device (docs/voting.md, docs/protocol.md):

``{"type": "ballot", "name": "claim", "args": {poll, blinded, for?}}``
    The node appends ``ballot.claim`` as the voter (it is a normal, identified command) and,
    once the fold accepted it, signs the *blinded* value the log recorded for that voter
    and replies ``{ok, signed, w}``. A retry (same value) is signed again, identically.

``{"type": "ballot", "name": "deposit", "args": {poll, token, sig, w, choice, rev, reveal}}``
    Anonymous as far as the log goes: the node checks the ballot against its replica, drops
    it in the poll's *box* and replies once the box has been emptied into the log as one
    ``ballot.deposit`` entry (given by the node, never by a person) and folded, i.e. after a
    durable append. A box is emptied when it holds ``mix`` ballots or the poll closes, so
    the log never shows one voter's claim followed by that voter's ballot alone.

Nothing here logs, counts or keeps who deposited what: a ballot is held in memory only
until its batch is in the log, and log lines carry counts, never people or choices.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .. import blind, polls
from ..errors import BadArgs, HemicycleError, RateLimited, Refused, Unavailable
from ..state import Poll, PublicPoll
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


@dataclass
class _Waiting:
    ballot: dict[str, Any]
    done: asyncio.Future[None]


@dataclass
class RoomBox:
    """One room's ballot boxes on one node, and the keys it offers and signs with."""

    hub: RoomHub
    secret: str
    """:func:`ballot_key` of the node's secret."""
    boxes: dict[str, list[_Waiting]] = field(default_factory=dict)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    offered: set[str] = field(default_factory=set)
    batches: int = 0

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
            digest = hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()
            outcome = await self.hub.submit(
                BOX_ACTOR,
                "poll.keys",
                {"poll": poll_id, "keys": keys},
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

    async def deposit(self, args: dict[str, Any]) -> dict[str, Any]:
        args = dict(args)
        poll_id = arg_str(args, "poll", max_len=40)
        assert poll_id is not None
        ballot = polls.check_ballot(args)
        poll = polls.get_poll(self.hub.state, poll_id)
        problem = polls.deposit_problem(self.hub.state, poll, ballot, now_ms())
        if problem is not None:
            raise problem
        if not self._counted(poll, ballot):
            waiting = _Waiting(ballot, asyncio.get_running_loop().create_future())
            self.boxes.setdefault(poll_id, []).append(waiting)
            self._maybe_flush(poll_id)
            await waiting.done
            poll = polls.get_poll(self.hub.state, poll_id)
            if not self._counted(poll, ballot):
                problem = polls.deposit_problem(self.hub.state, poll, ballot, now_ms())
                raise problem or Refused("the ballot was not counted", code="bad_ballot")
        return {"receipt": blind.receipt(ballot["token"])}

    @staticmethod
    def _counted(poll: Poll, ballot: dict[str, Any]) -> bool:
        prior = poll["ballots"].get(ballot["token"])
        return prior is not None and (
            prior["rev"] > ballot["rev"]
            or (prior["rev"] == ballot["rev"] and prior["choice"] == ballot["choice"])
        )

    def _maybe_flush(self, poll_id: str, *, force: bool = False) -> None:
        box = self.boxes.get(poll_id)
        if not box:
            return
        poll = self.hub.state["polls"]["polls"].get(poll_id)
        closing = poll is None or poll["state"] != "open" or polls.closed_by_timer(poll, now_ms())
        if force or closing or len(box) >= (poll["mix"] if poll is not None else 1):
            del self.boxes[poll_id]
            random.shuffle(box)  # no order of arrival survives, even in memory
            self.spawn(self._flush(poll_id, box))

    async def _flush(self, poll_id: str, box: list[_Waiting]) -> None:
        self.batches += 1
        # Random, not the node's name: nothing in a batch's entry says where it came from.
        cid = f"box:{poll_id}:{secrets.token_hex(8)}"
        ballots = sorted((w.ballot for w in box), key=lambda b: (b["token"], b["rev"]))
        error: HemicycleError | None = None
        for attempt in range(FLUSH_TRIES):
            try:
                await self.hub.submit(
                    BOX_ACTOR, "ballot.deposit", {"poll": poll_id, "ballots": ballots}, cid
                )
                error = None
                break
            except Unavailable as exc:  # Redis restarting: the same cid makes a retry safe
                error = exc
                await asyncio.sleep(min(FLUSH_BACKOFF[1], FLUSH_BACKOFF[0] * 2**attempt))
            except HemicycleError as exc:
                error = exc
                break
        if error is not None:
            log.warning(
                "room %s: a batch of %d ballot(s) for %s did not reach the log: %s",
                self.hub.room,
                len(box),
                poll_id,
                error.code,
            )
        for waiting in box:
            if waiting.done.done():
                continue
            if error is None:
                waiting.done.set_result(None)
            else:
                waiting.done.set_exception(error)

    # -- what the fold tells us ---------------------------------------------------------

    def on_events(self, entry_id: str, events: list[Event]) -> None:
        for event in events:
            kind = event["type"]
            if kind in ("poll.created", "poll.updated"):
                self.offer_keys()
            elif event["type"] == "poll.closed" or event["type"] == "poll.timer":
                self._maybe_flush(event["id"])

    async def close(self) -> None:
        for poll_id in list(self.boxes):
            self._maybe_flush(poll_id, force=True)
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=5)
        for task in list(self.tasks):
            task.cancel()


class Ballots(Feature):
    """Secret ballots: the ``ballot`` frames, and a ballot box per room (``running``)."""

    name = "ballots"

    def __init__(self) -> None:
        self.boxes: dict[str, RoomBox] = {}

    def frames(self) -> Mapping[str, FrameHandler]:
        return {"ballot": self.handle_frame}

    @contextlib.asynccontextmanager
    async def running(self, node: Host) -> AsyncIterator[None]:
        for room, hub in node.hubs.items():
            self.boxes[room] = RoomBox(hub, ballot_key(node.settings.secret))
            self.boxes[room].offer_keys()
        try:
            yield
        finally:
            boxes, self.boxes = list(self.boxes.values()), {}
            for box in boxes:
                await box.close()

    def folded(self, hub: RoomHub, entry_id: str, events: list[Event]) -> None:
        box = self.boxes.get(hub.room)
        if box is not None:
            box.on_events(entry_id, events)

    async def handle_frame(self, session: Session, data: dict[str, Any]) -> None:
        """``{"type": "ballot", "cid", "name": "claim"|"deposit", "args"}`` → one ``reply``.

        The reply may wait for the box; it is sent from a task so the connection keeps
        reading the person's other frames meanwhile.
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
        if not session.bucket.take():
            raise RateLimited("too many ballots; slow down")
        run: Callable[[], Awaitable[dict[str, Any]]]
        if name == "claim":

            def run() -> Awaitable[dict[str, Any]]:
                return box.claim(session, cid, args)
        elif name == "deposit":

            def run() -> Awaitable[dict[str, Any]]:
                return box.deposit(args)
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
