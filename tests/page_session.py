"""A scripted room session that makes the fold produce every event type, folded in memory.

Used by tests/test_page_state.py: the pages' JS appliers replay it for each role and must
hold the server's ``fold.view`` for that person after every entry. The session is pure (no
node): log entries ``{cid, actor, cmd, args, ts}`` folded with :func:`server.fold.fold`, in
the plenary room of the demo assembly (so the page that replays it shows the same room).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from server import blind, fold, polls, seal
from server.types import RoomConfig

from .polls_helpers import Device, key_for, seal_key_for

ROOM = "plenary"

# The people of the session, as their invites say (the claims a page's ``HC.you`` carries).
# The replayed roles are the ones in VIEWERS; the others act so that the viewers see it.
PEOPLE: dict[str, dict[str, Any]] = {
    "chair": {"role": "moderator", "name": "Chair"},
    "ana": {
        "role": "participant",
        "name": "Sokha Chan",
        "org": "aple-kh",
        "country": "KH",
        "lang": "es",
    },
    "pia": {"role": "participant", "name": "Pia Guest", "country": "FR"},
    "pan": {"role": "panelist", "name": "Lucía Pérez", "org": "mais-do", "country": "DO"},
    "rep2": {"role": "participant", "name": "Rania Haddad", "org": "sawa-ps", "country": "PS"},
    "es1": {"role": "interpreter", "name": "Elena", "booth": "es", "pair": ["en", "es"]},
    "es2": {"role": "interpreter", "name": "Emilio", "booth": "es", "pair": ["en", "es", "fr"]},
    "fr1": {"role": "interpreter", "name": "Fanny", "booth": "fr", "pair": ["en", "fr"]},
    "cap": {"role": "captioner", "name": "Cora", "booth": "fr"},  # captions the fr channel
    "obs": {"role": "observer", "name": "Olga Observer", "lang": "fr"},
}

VIEWERS = {
    "participant": "pia",
    "member": "ana",  # a participant of a member organisation: votes, proxies, secret ballot
    "panelist": "pan",
    "interpreter": "es1",
    "captioner": "cap",
    "moderator": "chair",
    "observer": "obs",
}

QUICK = {
    "question": {"en": "Coffee or tea?", "fr": "Café ou thé ?"},
    "kind": "multiple",
    "max": 2,
    "options": [
        {"id": "coffee", "text": "Coffee"},
        {"id": "tea", "text": "Tea"},
        {"id": "water", "text": "Water"},
    ],
    "electorate": "present",
    "change": True,
}


@dataclass
class Step:
    """One folded log entry: the entry, the events it made, and the full state after it."""

    entry: dict[str, Any]
    events: list[dict[str, Any]]
    state: dict[str, Any]


@dataclass
class Session:
    config: RoomConfig
    initial: dict[str, Any]
    steps: list[Step] = field(default_factory=list)

    @property
    def final(self) -> dict[str, Any]:
        return self.steps[-1].state if self.steps else self.initial

    def event_types(self) -> set[str]:
        return {e["type"] for s in self.steps for e in s.events}


class Recorder:
    """Folds entries one by one; every command must be accepted (a refusal is a script bug)."""

    def __init__(self, config: RoomConfig) -> None:
        self.state = fold.new_state(config)
        self.session = Session(config, copy.deepcopy(self.state))
        self.ts = 1_764_763_200_000
        self.n = 0

    def entry(
        self,
        pid: str,
        role: str,
        cmd: str,
        args: dict[str, Any] | None = None,
        *,
        after: int = 10,
        conn: str | None = None,
    ) -> list[dict[str, Any]]:
        self.n += 1
        self.ts += after
        entry = {
            "cid": f"c{self.n}",
            "actor": {"pid": pid, "role": role, "conn": conn},
            "cmd": cmd,
            "args": args or {},
            "ts": self.ts,
        }
        outcome = fold.fold(self.state, f"{self.ts}-{self.n}", entry)
        assert outcome.error is None, f"step {self.n} {cmd} {args}: {outcome.error}"
        self.session.steps.append(Step(entry, outcome.events, copy.deepcopy(self.state)))
        return outcome.events

    def do(
        self, pid: str, cmd: str, args: dict[str, Any] | None = None, **kw: Any
    ) -> list[dict[str, Any]]:
        return self.entry(pid, PEOPLE[pid]["role"], cmd, args, **kw)

    def system(
        self, cmd: str, args: dict[str, Any] | None = None, **kw: Any
    ) -> list[dict[str, Any]]:
        return self.entry("node", "system", cmd, args, **kw)

    def join(self, pid: str, conn: str | None = None) -> list[dict[str, Any]]:
        return self.system("join", {"pid": pid, **PEOPLE[pid], "conn": conn or f"{pid}-c1"})

    def leave(self, pid: str, conn: str | None = None) -> list[dict[str, Any]]:
        return self.system("leave", {"pid": pid, "conn": conn or f"{pid}-c1"})

    def tick(self, after: int) -> list[dict[str, Any]]:
        return self.system("tick", after=after)


def record(config: RoomConfig) -> Session:
    """The scripted session: every slice, every event type, in one room."""
    r = Recorder(config)
    for pid in PEOPLE:
        r.join(pid)  # person.joined; booth.assigned (interpreters); channel.chosen (ana: es)
    _core_and_audio(r)
    _stage(r)
    _channels(r)
    _booths_away(r)
    _quick_poll(r)
    _secret_vote(r)
    _timer_poll(r)
    _invites(r)
    return r.session


def _core_and_audio(r: Recorder) -> None:
    r.join("ana", "ana-c2")  # a second tab: one person, two connections
    r.leave("ana", "ana-c2")
    r.do("ana", "hand.raise")
    r.do("pia", "hand.raise")
    r.do("pan", "hand.raise")
    r.do("pia", "hand.lower")
    r.do("chair", "floor.grant", {})  # the first in the queue: ana
    r.do("chair", "floor.grant", {"pid": "pan"})
    r.do("chair", "audio.mute", {"pid": "ana"})
    r.do("chair", "audio.mute", {"pid": "pan"})
    r.do("chair", "audio.unmute", {"pid": "pan"})
    r.do("chair", "floor.revoke", {"pid": "ana"})  # and audio.unmuted (by: null)
    r.do("chair", "agenda.next")
    r.do("chair", "agenda.goto", {"index": 2})
    r.do("chair", "notice.post", {"text": "Coffee break at 15:00"})
    r.do("chair", "notice.post", {"text": ""})
    r.do("chair", "notice.post", {"text": "Vote after the break"})
    # The chair's connection is on node n1: that node records (the fold reads it from the conn).
    r.do("chair", "recording.start", conn="n1~chair")
    r.do("chair", "recording.stop", conn="n1~chair")
    r.do("chair", "recording.start", conn="n1~chair")


def _stage(r: Recorder) -> None:
    r.do("chair", "stage.add", {"pid": "pan"})
    r.do("chair", "stage.add", {"pid": "rep2"})
    r.do("chair", "stage.layout", {"layout": "grid"})
    r.do("pan", "share.start")
    r.do("chair", "stage.pin", {"target": "screen"})
    r.do("chair", "share.stop")  # share.stopped, and the room unpins (stage.pinned by null)
    r.do("chair", "stage.pin", {"target": "rep2"})
    r.do("chair", "stage.remove", {"pid": "rep2"})  # and unpinned
    r.do("chair", "stage.layout", {"layout": "screen"})
    r.do("pan", "share.start")  # still sharing at the end: the pages draw it


def _channels(r: Recorder) -> None:
    r.do("pia", "channel.choose", {"lang": "fr"})
    r.do("cap", "channel.choose", {"lang": "ru"})
    r.do("chair", "channel.add", {"lang": "de"})
    r.do("pan", "channel.choose", {"lang": "de"})
    r.do("es1", "air.take")
    r.do("es2", "handover.request")
    r.do("es1", "handover.decline")
    r.do("es2", "handover.request")
    r.do("es2", "handover.cancel")
    r.do("es1", "handover.offer", {"partner": "es2"})
    r.do("es2", "handover.accept")  # air.handed: es2 on air
    r.do("es1", "handover.request")
    r.tick(after=31_000)  # handover.expired
    r.do("es2", "booth.cough", {"on": True})
    r.do("es2", "booth.cough", {"on": False})
    r.do("es2", "booth.cough", {"on": True})
    r.do("es1", "booth.input", {"input": "fr"})
    r.do("es2", "booth.output", {"lang": "fr"})
    r.do("fr1", "air.take")
    r.do("fr1", "booth.signal", {"preset": "slow_down"})
    r.do("es1", "booth.signal", {"preset": "speak_up"})
    r.do("es1", "chat.post", {"chat": "booth", "text": "I take the next speaker"})
    r.do("fr1", "chat.post", {"chat": "all", "text": "Sound is low"})
    r.do("chair", "chat.post", {"chat": "fr", "text": "Checking the sound"})
    r.do("cap", "caption.post", {"lang": "fr", "text": "Bienvenue  à la\nplénière"})
    r.do("es2", "caption.post", {"lang": "es", "text": "Bienvenidos"})
    r.do("chair", "booth.clear", {"lang": "fr"})


def _booths_away(r: Recorder) -> None:
    r.do("es1", "handover.request")
    r.leave("es2")  # handover.cancelled (disconnected) and booth.away
    r.join("es2")  # booth.back
    r.leave("es2")
    r.tick(after=16_000)  # air.released (disconnected)
    r.join("es2")
    r.do("es1", "air.take")
    r.do("es1", "air.release")
    r.do("es2", "air.take")


def _quick_poll(r: Recorder) -> None:
    r.do("chair", "poll.create", {"def": QUICK})  # p1
    r.do("chair", "poll.update", {"poll": "p1", "def": {**QUICK, "seconds": 120}})
    r.do("chair", "poll.create", {"def": {**QUICK, "question": "Drop me"}})  # p2
    r.do("chair", "poll.delete", {"poll": "p2"})
    r.do("chair", "poll.open", {"poll": "p1"})
    r.do("chair", "poll.timer", {"poll": "p1", "seconds": 90})
    r.do("pia", "ballot.cast", {"poll": "p1", "choice": ["tea"]})
    r.do("ana", "ballot.cast", {"poll": "p1", "choice": ["coffee", "water"]}, after=300)
    r.do("pia", "ballot.cast", {"poll": "p1", "choice": ["tea", "water"]}, after=300)
    r.do("pan", "ballot.cast", {"poll": "p1", "choice": ["coffee"]}, after=50)
    r.tick(after=300)  # the last poll.progress
    r.do("chair", "poll.close", {"poll": "p1"})  # and poll.sealed
    r.do("chair", "poll.publish", {"poll": "p1"})


def _secret_vote(r: Recorder) -> None:
    poll_id = "strategic-framework"
    r.do("rep2", "proxy.grant", {"to": "aple-kh"})
    r.do("pan", "proxy.grant", {"to": "aple-kh"})
    r.do("pan", "proxy.revoke")
    weights = polls.weight_classes(r.state, r.state["polls"]["polls"][poll_id])
    keys = {str(w): key_for(ROOM, poll_id, w).public.to_wire() for w in weights}
    public = seal.public_hex(seal_key_for(ROOM, poll_id))
    r.system("poll.keys", {"poll": poll_id, "keys": keys, "seal": public})
    r.do("chair", "poll.open", {"poll": poll_id})
    ballots = []
    for member, choice in (("aple-kh", ["yes"]), ("sawa-ps", ["abstain"])):
        w = int(r.state["polls"]["roll"][member]["w"])
        device = Device(ROOM, poll_id, w, blind.PublicKey.from_wire(keys[str(w)]))
        args = {"poll": poll_id, "blinded": device.blinded()}
        if member != "aple-kh":
            args["for"] = member
        r.do("ana", "ballot.claim", args)
        blinded = r.state["polls"]["polls"][poll_id]["voted"][member]["blinded"]
        device.take(key_for(ROOM, poll_id, w).sign(int(blinded, 16)))
        ballots.append(device.sealed(choice))
    r.do("pan", "ballot.claim", {"poll": poll_id, "blinded": "ab" * 64})  # never deposited
    for sealed in ballots:  # each appended at once; the second one sent twice
        r.system("ballot.deposit", {"poll": poll_id, "sealed": sealed})
    r.system("ballot.deposit", {"poll": poll_id, "sealed": ballots[1]})
    r.do("chair", "poll.close", {"poll": poll_id})
    r.tick(after=polls.GRACE_MS + 10)
    stored = [
        (b["sealed"], b["late"]) for b in r.state["polls"]["polls"][poll_id]["ballots"].values()
    ]
    # Two ballots under a minimum of three: the result reveals no choice (too_few).
    r.system("ballot.reveal", seal.open_all(seal_key_for(ROOM, poll_id), ROOM, poll_id, stored))
    r.do("chair", "poll.publish", {"poll": poll_id})


def _timer_poll(r: Recorder) -> None:
    r.do("chair", "poll.open", {"poll": "next-assembly"})
    r.do("pia", "ballot.cast", {"poll": "next-assembly", "choice": "hybrid"})
    r.tick(after=61_000)  # poll.closed by the timer, poll.sealed; left unpublished


def _invites(r: Recorder) -> None:
    for jti, pid in (("j-pia", "pia"), ("j-cap", "cap"), ("j-x", "ana")):
        claims = {
            k: PEOPLE[pid].get(k) for k in ("role", "name", "org", "country", "booth", "lang")
        }
        r.system("invite.record", {"jti": jti, **claims, "exp": 1_764_900_000, "by": "chair"})
    r.system("invite.record", {"jti": "j-cli", "role": "participant", "name": "Guest", "exp": 1})
    r.do("chair", "invite.revoke", {"jti": "j-x"})
    r.do("chair", "member.represent", {"member": "aple-kh", "name": "Vanna Sok"})
    r.do("obs", "channel.choose", {"lang": "es"})
