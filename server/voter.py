"""A voter's device in Python (tests, benchmarks, bots): what static/polls.js does in a page.

Casting a secret ballot, in order: :meth:`SecretBallot.new` (pick the token seed and the
blinding factor) → ``claim`` frame with :meth:`~SecretBallot.blinded` →
:meth:`~SecretBallot.take` the node's blind signature → ``deposit`` frame with
:meth:`~SecretBallot.sealed` (the ballot encrypted to the poll's seal key; send the same
sealed text again on a retry: it is counted once). :func:`cast_secret` does all of it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from . import blind, seal
from .client import Client, CommandError
from .state import State


@dataclass
class SecretBallot:
    room: str
    poll: str
    weight: int
    key: blind.PublicKey
    seal_key: str
    seed: str = field(default_factory=lambda: secrets.token_hex(32))
    r: int = 0
    signature: int | None = None

    def __post_init__(self) -> None:
        self.links = blind.chain(self.seed)
        while self.r < 2:
            self.r = secrets.randbelow(self.key.n)

    @classmethod
    def new(cls, state: State, room: str, poll_id: str, member: str | None) -> SecretBallot:
        """A fresh ballot for ``member`` (``None`` in a quick poll) in ``poll_id``."""
        poll = state["polls"]["polls"][poll_id]
        weight = 100 if member is None else int(state["polls"]["roll"][member]["w"])
        keys = poll["keys"]
        if keys is None:
            raise ValueError(f"poll {poll_id!r} has no ballot keys yet")
        key = blind.PublicKey.from_wire(keys[str(weight)])
        if poll["seal"] is None:
            raise ValueError(f"poll {poll_id!r} has no seal key yet")
        return cls(room, poll_id, weight, key, poll["seal"])

    @property
    def token(self) -> str:
        return self.links[0]

    def blinded(self) -> str:
        data = blind.message(self.room, self.poll, self.weight, self.token)
        return format(blind.blind(self.key, data, self.r), "x")

    def take(self, signed: str) -> None:
        signature = blind.unblind(self.key, int(signed, 16), self.r)
        data = blind.message(self.room, self.poll, self.weight, self.token)
        if not blind.verify(self.key, data, signature):
            raise CommandError("bad_signature", "the node's signature does not verify")
        self.signature = signature

    def ballot(self, choice: list[str], rev: int = 0) -> dict[str, Any]:
        """The ballot in clear, as it is sealed (and as the reveal opens it)."""
        assert self.signature is not None, "take() the signature first"
        return {
            "token": self.token,
            "sig": format(self.signature, "x"),
            "w": self.weight,
            "choice": choice,
            "rev": rev,
            "reveal": self.links[rev] if rev else None,
        }

    def sealed(self, choice: list[str], rev: int = 0) -> dict[str, Any]:
        """The ``deposit`` frame's args: the ballot sealed to the poll's key (fresh each
        call; keep it to re-send)."""
        return {
            "poll": self.poll,
            "sealed": seal.seal(self.seal_key, self.room, self.poll, self.ballot(choice, rev)),
        }


async def frame(
    client: Client,
    name: str,
    args: dict[str, Any],
    *,
    cid: str | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Send one ``ballot`` frame and return its reply (ok or not)."""
    return await client.request(name, args, cid=cid, timeout=timeout, type="ballot")


async def claim(
    client: Client,
    ballot: SecretBallot,
    member: str | None = None,
    *,
    on_behalf: str | None = None,
    cid: str | None = None,
) -> dict[str, Any]:
    args: dict[str, Any] = {"poll": ballot.poll, "blinded": ballot.blinded()}
    if on_behalf:
        args["for"] = on_behalf
    reply = await frame(client, "claim", args, cid=cid)
    if reply["ok"]:
        ballot.take(reply["signed"])
    return reply


async def cast_secret(
    client: Client,
    poll_id: str,
    choice: list[str],
    *,
    on_behalf: str | None = None,
    timeout: float = 10.0,
) -> tuple[SecretBallot, dict[str, Any]]:
    """Claim, unblind and deposit one secret ballot; the reply of the deposit (or claim)."""
    state = client.state
    poll = state["polls"]["polls"][poll_id]
    member = None if poll["electorate"] == "present" else on_behalf or client.you.get("org")
    ballot = SecretBallot.new(state, client.welcome["room"], poll_id, member)
    reply = await claim(client, ballot, on_behalf=on_behalf)
    if not reply["ok"]:
        return ballot, reply
    return ballot, await frame(client, "deposit", ballot.sealed(choice), timeout=timeout)
