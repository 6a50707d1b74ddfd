"""Helpers for the poll tests: a room folded in memory, and a secret voter's device."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from typing import Any

from server import blind, fold, seal
from server.types import Member, RoomConfig

from . import shapes

FORMAL = {
    "id": "vote",
    "kind": "yesno",
    "electorate": "roll",
    "question": {"en": "Adopt?"},
    "quorum": {"of": "roll", "fraction": 0.5},
}
QUICK = {
    "id": "quick",
    "kind": "single",
    "electorate": "present",
    "question": {"en": "Which?"},
    "options": [{"id": "a", "text": "A"}, {"id": "b", "text": "B"}, {"id": "c", "text": "C"}],
}
_KEYS: dict[tuple[str, str, int, int], blind.PrivateKey] = {}


def roll(*weights: float) -> tuple[Member, ...]:
    return tuple(
        Member(id=f"m{i}", name=f"Member {i}", country=f"C{i % 7}", weight=w)
        for i, w in enumerate(weights)
    )


def room_config(
    members: tuple[Member, ...] = (), polls: list[dict[str, Any]] | None = None, **voting: Any
) -> RoomConfig:
    extra: dict[str, Any] = {"polls": polls or []}
    if voting:
        extra["voting"] = voting
    return RoomConfig(id="hall", title="Hall", members=members, extra=extra)


def key_for(room: str, poll: str, weight: int, bits: int = 1024) -> blind.PrivateKey:
    k = (room, poll, weight, bits)
    if k not in _KEYS:
        _KEYS[k] = blind.derive_key(
            blind.key_seed("test-secret-xxxxxxxx", room, poll, weight), bits
        )
    return _KEYS[k]


def seal_key_for(room: str, poll: str) -> Any:
    return seal.derive_key("test-ballot-key", room, poll)


@dataclass
class Room:
    """One room's state, folded entry by entry as a node would."""

    config: RoomConfig
    state: dict[str, Any] = field(init=False)
    ts: int = 1_000_000
    ids: Any = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.state = fold.new_state(self.config)

    def entry(
        self,
        pid: str,
        role: str,
        cmd: str,
        args: dict[str, Any],
        cid: str | None = None,
        ts: int | None = None,
        conn: str | None = None,
    ) -> fold.Outcome:
        self.ts = ts if ts is not None else self.ts + 10
        n = next(self.ids)
        e = {
            "cid": cid or f"c{n}",
            "actor": {"pid": pid, "role": role, "conn": conn},
            "cmd": cmd,
            "args": args,
            "ts": self.ts,
        }
        outcome = fold.fold(self.state, f"{n}-0", e)
        for event in outcome.events:
            shapes.check_event(event)
        shapes.check_state(self.state)
        return outcome

    def do(
        self,
        pid: str,
        cmd: str,
        args: dict[str, Any] | None = None,
        *,
        role: str = "participant",
        **kw: Any,
    ) -> fold.Outcome:
        return self.entry(pid, role, cmd, args or {}, **kw)

    def chair(self, cmd: str, args: dict[str, Any] | None = None, **kw: Any) -> fold.Outcome:
        return self.entry("chair", "moderator", cmd, args or {}, **kw)

    def system(self, cmd: str, args: dict[str, Any], **kw: Any) -> fold.Outcome:
        return self.entry("node", "system", cmd, args, **kw)

    def join(self, pid: str, role: str = "participant", org: str | None = None) -> None:
        args = {"pid": pid, "name": pid.title(), "role": role, "conn": f"conn-{pid}"}
        if org:
            args["org"] = org
        out = self.system("join", args)
        assert out.error is None, out.error

    def poll(self, poll_id: str) -> dict[str, Any]:
        p: dict[str, Any] = self.state["polls"]["polls"][poll_id]
        return p

    def give_keys(self, poll_id: str, bits: int = 1024) -> None:
        from server.polls import weight_classes

        poll = self.poll(poll_id)
        keys = {
            str(w): key_for("hall", poll_id, w, bits).public.to_wire()
            for w in weight_classes(self.state, poll)
        }
        public = seal.public_hex(seal_key_for("hall", poll_id))
        out = self.system("poll.keys", {"poll": poll_id, "keys": keys, "seal": public})
        assert out.error is None, out.error

    def deposit(self, poll_id: str, sealed: str, **kw: Any) -> fold.Outcome:
        """What a node does with a ``deposit`` frame: append the sealed ballot at once."""
        return self.system(
            "ballot.deposit",
            {"poll": poll_id, "sealed": sealed},
            cid=f"seal:{blind.tracker(sealed)}",
            **kw,
        )

    def reveal(self, poll_id: str, **kw: Any) -> fold.Outcome:
        """What a node does after the close: open every sealed ballot, append them at once."""
        stored = [(b["sealed"], b["late"]) for b in self.poll(poll_id)["ballots"].values()]
        args = seal.open_all(seal_key_for("hall", poll_id), "hall", poll_id, stored)
        return self.system("ballot.reveal", args, **kw)

    def sign(self, poll_id: str, voter: str, weight: int) -> int:
        """What a node does after an accepted claim: sign the recorded blinded value."""
        blinded = self.poll(poll_id)["voted"][voter]["blinded"]
        return key_for("hall", poll_id, weight).sign(int(blinded, 16))

    def result(self, poll_id: str) -> dict[str, Any]:
        r: dict[str, Any] = self.poll(poll_id)["result"]
        return r


@dataclass
class Device:
    """A secret voter's device: the token chain, the blinding factor, the signed token."""

    room: str
    poll: str
    weight: int
    key: blind.PublicKey
    seed: str = field(default_factory=lambda: secrets.token_hex(32))
    r: int = 0
    signature: int = 0

    def __post_init__(self) -> None:
        self.links = blind.chain(self.seed)
        while True:
            self.r = secrets.randbelow(self.key.n)
            if self.r > 1:
                break

    @property
    def token(self) -> str:
        return self.links[0]

    @property
    def message(self) -> bytes:
        return blind.message(self.room, self.poll, self.weight, self.token)

    def blinded(self) -> str:
        return format(blind.blind(self.key, self.message, self.r), "x")

    def take(self, signed: int) -> None:
        self.signature = blind.unblind(self.key, signed, self.r)
        assert blind.verify(self.key, self.message, self.signature)

    def ballot(self, choice: list[str], rev: int = 0) -> dict[str, Any]:
        return {
            "token": self.token,
            "sig": format(self.signature, "x"),
            "w": self.weight,
            "choice": choice,
            "rev": rev,
            "reveal": self.links[rev] if rev else None,
        }

    def sealed(self, choice: list[str], rev: int = 0) -> str:
        """The ballot sealed to the poll's key, as the device sends it."""
        public = seal.public_hex(seal_key_for(self.room, self.poll))
        return seal.seal(public, self.room, self.poll, self.ballot(choice, rev))
