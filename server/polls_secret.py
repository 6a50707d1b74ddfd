"""Secret ballots in the fold: ballot keys, claims (who), sealed ballots and the reveal. Pure.

A claim records that a voter took its ballot, with a *blinded* token. A deposit, given by
a node for an anonymous ``ballot`` frame, holds one *sealed* ballot — encrypted on the
voter's device to the poll's seal key (server/seal.py) — so the log, Redis and every event
hold no choice before the close. After the close a node opens every sealed ballot and
appends them together, sorted by token, as one ``ballot.reveal``; the fold checks each
(blind signature, change chain, choice), keeps each token's latest revision and tallies.
Nothing here links a claim to a ballot; docs/voting.md explains why the log cannot either.
"""

from __future__ import annotations

import copy
from typing import Any

from . import blind, tally
from .errors import BadArgs, Refused
from .events import BallotClaimed, BallotDeposited, PollKeys
from .polls_core import (
    TO_CHAIR,
    PollState,
    already_voted,
    check_choice,
    choice_arg,
    find_poll,
    get_poll,
    hex_arg,
    mark_dirty,
    must_be_open,
    poll_arg,
    seal_events,
    voter_for,
    weight_classes,
)
from .state import Poll, Revealed
from .types import Actor, Event, State, arg_int, arg_str

MAX_SEALED = 8192
"""The longest sealed ballot, in hex digits (a ballot pads to 1,024 or 1,536 bytes)."""
SEAL_KEY = 130
"""An uncompressed P-256 point, in hex digits."""
MAX_REVEAL = 200_000


def check_claim(args: dict[str, Any]) -> dict[str, Any]:
    return {
        "poll": poll_arg(args),
        "blinded": hex_arg(args, "blinded", 1024),
        "for": arg_str(args, "for", max_len=120, required=False),
    }


def check_ballot(data: Any) -> dict[str, Any]:
    """One opened ballot: ``{token, sig, w, choice, rev, reveal}``."""
    if not isinstance(data, dict):
        raise BadArgs("a ballot must be a map")
    token = hex_arg(data, "token", 64)
    assert token is not None
    if len(token) != 64:
        raise BadArgs("'token' must be 64 hexadecimal digits")
    rev = arg_int(data, "rev", lo=0, hi=blind.CHAIN, default=0)
    reveal = hex_arg(data, "reveal", 64, required=bool(rev))
    return {
        "token": token,
        "sig": hex_arg(data, "sig", 1024),
        "w": arg_int(data, "w", lo=1, hi=10**9),
        "choice": choice_arg(data),
        "rev": rev,
        "reveal": reveal if rev else None,
    }


def check_sealed(args: dict[str, Any]) -> str:
    sealed = hex_arg(args, "sealed", MAX_SEALED)
    assert sealed is not None
    if len(sealed) % 2:
        raise BadArgs("'sealed' must be whole bytes of hexadecimal")
    return sealed


def check_deposit(args: dict[str, Any]) -> dict[str, Any]:
    return {"poll": poll_arg(args), "sealed": check_sealed(args)}


def check_reveal(args: dict[str, Any]) -> dict[str, Any]:
    ballots = args.get("ballots")
    if not isinstance(ballots, list) or len(ballots) > MAX_REVEAL:
        raise BadArgs(f"'ballots' must be a list of at most {MAX_REVEAL} ballots")
    return {
        "poll": poll_arg(args),
        "ballots": [check_ballot(b) for b in ballots],
        "unreadable": arg_int(args, "unreadable", lo=0, hi=MAX_REVEAL, default=0),
        "late": arg_int(args, "late", lo=0, hi=MAX_REVEAL, default=0),
        "opened": arg_int(args, "opened", lo=0, hi=MAX_REVEAL),
    }


def check_keys(args: dict[str, Any]) -> dict[str, Any]:
    keys = args.get("keys")
    if not isinstance(keys, dict) or not keys:
        raise BadArgs("'keys' must map weight classes to public keys")
    out = {}
    for w, key in keys.items():
        if not isinstance(key, dict):
            raise BadArgs("a key is {n, e}")
        out[str(w)] = {"n": hex_arg(key, "n", 1024), "e": arg_int(key, "e", lo=3, hi=2**31)}
    seal = hex_arg(args, "seal", SEAL_KEY)
    if seal is None or len(seal) != SEAL_KEY or not seal.startswith("04"):
        raise BadArgs("'seal' must be an uncompressed P-256 point (130 hexadecimal digits)")
    return {"poll": poll_arg(args), "keys": out, "seal": seal}


def decide_keys(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    poll = get_poll(state, args["poll"])
    if poll["state"] != PollState.DRAFT or not poll["secret"]:
        return []  # a late or stray key offer changes nothing
    if poll["keys"] is not None:
        if poll["keys"] == args["keys"] and poll["seal"] == args["seal"]:
            return []
        raise Refused(
            "this poll already has other keys (nodes with different secrets?)", code="keys_mismatch"
        )
    if sorted(int(w) for w in args["keys"]) != weight_classes(state, poll):
        raise Refused("keys must cover every weight class", code="keys_mismatch")
    return [
        {
            "type": "poll.keys",
            "id": poll["id"],
            "keys": args["keys"],
            "seal": args["seal"],
            "to": TO_CHAIR,
        }
    ]


def decide_claim(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    poll = get_poll(state, args["poll"])
    must_be_open(poll, ts)
    if not poll["secret"]:
        raise Refused("this is an open ballot: use ballot.cast", code="open_ballot")
    voter, weight = voter_for(state, poll, actor, args["for"])
    prior = poll["voted"].get(voter)
    if prior is not None:
        if prior.get("blinded") == args["blinded"]:
            return []  # the same claim again (a retry from the same device): nothing new
        raise already_voted(state, poll, voter)
    # To the voter alone: the chair follows the turnout through poll.progress, never a
    # blinded value (docs/voting.md, "What the chair sees").
    return [
        {
            "type": "ballot.claimed",
            "id": poll["id"],
            "voter": voter,
            "by": actor.pid,
            "at": ts,
            "w": weight,
            "blinded": args["blinded"],
            "to": [f"pid:{actor.pid}"],
        }
    ]


SEALED_PER_CLAIM = blind.CHAIN + 1
"""Sealed ballots a poll takes per claim: a first ballot and its changes (``rev`` 0…CHAIN),
or, where changes are off, room for a device that lost its sealed text and sealed again."""


def most_sealed(poll: Poll) -> int:
    """How many sealed ballots a poll takes in all (what they hold is checked at the reveal)."""
    return sum(poll["pending"].values()) * SEALED_PER_CLAIM


def decide_deposit(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    """A sealed ballot into the poll's store: counted once however often it is re-sent.

    Taken while the poll is open and, after the close, until the reveal (a ballot sealed
    before the close may still be on its way); what it holds is checked at the reveal."""
    poll = get_poll(state, args["poll"])
    if not poll["secret"]:
        raise Refused("this is an open ballot", code="open_ballot")
    late = poll["state"] == PollState.CLOSED or (
        poll["closes_at"] is not None and ts >= poll["closes_at"]
    )
    if poll["state"] not in (PollState.OPEN, PollState.CLOSED) or poll["sealed"]:
        raise Refused(
            f"the poll is {poll['state']} and its ballots are revealed",
            code=f"poll_is_{poll['state']}",
        )
    tracker = blind.tracker(args["sealed"])
    if tracker in poll["ballots"]:
        return []  # the same sealed ballot again: a retry, counted once
    if not poll["pending"] or len(poll["ballots"]) >= most_sealed(poll):
        raise Refused("no claimed ballot is waiting for this one", code="no_claim")
    deposited: BallotDeposited = {
        "type": "ballot.deposited",
        "id": poll["id"],
        "tracker": tracker,
        "sealed": args["sealed"],
        "late": late,
        "to": [],
    }
    return [deposited]


def _valid(state: State, poll: Poll, ballot: dict[str, Any]) -> bool:
    key = (poll["keys"] or {}).get(str(ballot["w"]))
    if key is None:
        return False
    data = blind.message(state["meta"]["room"], poll["id"], ballot["w"], ballot["token"])
    if not blind.verify(blind.PublicKey.from_wire(key), data, int(ballot["sig"], 16)):
        return False
    if ballot["rev"] and (
        not poll["change"]
        or ballot["reveal"] is None
        or not blind.follows(ballot["reveal"], ballot["rev"], ballot["token"])
    ):
        return False
    try:
        check_choice(poll, ballot["choice"])
    except Refused:
        return False
    return True


def count_revealed(
    state: State, poll: Poll, ballots: list[dict[str, Any]]
) -> tuple[dict[str, dict[str, Any]], int]:
    """The ballot each token counts with (its latest valid revision), and how many opened
    ballots were invalid: a bad signature or chain, an unknown option, two different
    ballots under one token and revision (both dropped), more tokens than claims."""
    invalid = 0
    versions: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for ballot in sorted(ballots, key=lambda b: (b["token"], b["rev"])):
        if not _valid(state, poll, ballot):
            invalid += 1
            continue
        same = versions.setdefault(ballot["token"], {}).setdefault(ballot["rev"], [])
        if ballot not in same:
            same.append(ballot)
    chosen: dict[str, dict[str, Any]] = {}
    per_class: dict[str, int] = {}
    for token, revs in sorted(versions.items()):
        top = revs[max(revs)]
        if len(top) > 1:
            invalid += len(top)
            continue
        w = str(top[0]["w"])
        if per_class.get(w, 0) >= poll["pending"].get(w, 0):
            invalid += 1  # more tokens than claims of this weight: cannot come from claims
            continue
        per_class[w] = per_class.get(w, 0) + 1
        chosen[token] = top[0]
    return chosen, invalid


def decide_reveal(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    """The opened ballots of a closed poll, from a node: check, keep one per token, seal.

    Below the poll's minimum (``mix``) of counted ballots nothing is revealed: the result
    says ``too_few`` and lists no choice, so no ballot is ever shown among fewer."""
    poll = get_poll(state, args["poll"])
    if not poll["secret"] or poll["state"] != PollState.CLOSED or poll["sealed"]:
        return []  # a second node's reveal, or a stray one: nothing new
    if args["opened"] != len(poll["ballots"]):
        raise Refused(
            f"the reveal opened {args['opened']} sealed ballot(s); the poll holds "
            f"{len(poll['ballots'])}",
            code="stale_reveal",
        )
    if len(args["ballots"]) + args["unreadable"] + args["late"] > args["opened"]:
        raise BadArgs("a reveal cannot hold more ballots than it opened")
    chosen, invalid = count_revealed(state, poll, args["ballots"])
    work: Poll = {
        **poll,
        "counts": tally.empty_counts(poll["options"]),
        "cast": [0, 0],
    }
    too_few = len(chosen) < poll["mix"]
    revealed: list[Revealed] = []
    if not too_few:
        for ballot in chosen.values():
            tally.add(work, ballot["choice"], ballot["w"])
            revealed.append({"choice": list(ballot["choice"]), "w": ballot["w"]})
    revealed.sort(key=lambda r: (r["choice"], r["w"]))
    return seal_events(
        state,
        work,
        ts,
        revealed={
            "ballots": revealed,
            "counted": len(chosen),
            "invalid": invalid + args["unreadable"],
            "late": args["late"],
            "too_few": too_few,
        },
    )


def apply_keys(state: State, event: PollKeys) -> None:
    poll = find_poll(state, event["id"])
    if poll is not None:
        poll["keys"] = copy.deepcopy(event["keys"])
        poll["seal"] = event["seal"]


def apply_claimed(state: State, event: BallotClaimed) -> None:
    poll = find_poll(state, event["id"])
    if poll is None:
        return
    poll.setdefault("voted", {})[event["voter"]] = {
        "by": event["by"],
        "at": event["at"],
        "w": event["w"],
        "blinded": event["blinded"],
    }
    mark_dirty(poll)
    if "pending" in poll:
        w = str(event["w"])
        poll["pending"][w] = poll["pending"].get(w, 0) + 1


def apply_deposited(state: State, event: BallotDeposited) -> None:
    poll = find_poll(state, event["id"])
    if poll is None or "ballots" not in poll:
        return
    poll["ballots"][event["tracker"]] = {"sealed": event["sealed"], "late": event["late"]}
