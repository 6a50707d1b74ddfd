"""Secret ballots in the fold: ballot keys, claims (who) and deposits (what). Pure.

A claim records that a voter took its ballot, with a *blinded* token; a deposit, given by
a node's ballot box, carries tokens signed blindly and their choices, several voters' at
once. Nothing here links the two; docs/voting.md explains why the log cannot either.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
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
    closed_by_timer,
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
from .state import Ballot, Poll
from .types import Actor, Event, State, arg_int, arg_str

MAX_BATCH = 500


def check_claim(args: dict[str, Any]) -> dict[str, Any]:
    return {
        "poll": poll_arg(args),
        "blinded": hex_arg(args, "blinded", 1024),
        "for": arg_str(args, "for", max_len=120, required=False),
    }


def check_ballot(data: Any) -> dict[str, Any]:
    """One ballot of a deposit: ``{token, sig, w, choice, rev, reveal}``."""
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


def check_deposit(args: dict[str, Any]) -> dict[str, Any]:
    ballots = args.get("ballots")
    if not isinstance(ballots, list) or not 1 <= len(ballots) <= MAX_BATCH:
        raise BadArgs(f"'ballots' must be a list of 1 to {MAX_BATCH} ballots")
    return {"poll": poll_arg(args), "ballots": [check_ballot(b) for b in ballots]}


def check_keys(args: dict[str, Any]) -> dict[str, Any]:
    keys = args.get("keys")
    if not isinstance(keys, dict) or not keys:
        raise BadArgs("'keys' must map weight classes to public keys")
    out = {}
    for w, key in keys.items():
        if not isinstance(key, dict):
            raise BadArgs("a key is {n, e}")
        out[str(w)] = {"n": hex_arg(key, "n", 1024), "e": arg_int(key, "e", lo=3, hi=2**31)}
    return {"poll": poll_arg(args), "keys": out}


def decide_keys(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    poll = get_poll(state, args["poll"])
    if poll["state"] != PollState.DRAFT or not poll["secret"]:
        return []  # a late or stray key offer changes nothing
    if poll["keys"] is not None:
        if poll["keys"] == args["keys"]:
            return []
        raise Refused(
            "this poll already has other keys (nodes with different secrets?)", code="keys_mismatch"
        )
    if sorted(int(w) for w in args["keys"]) != weight_classes(state, poll):
        raise Refused("keys must cover every weight class", code="keys_mismatch")
    return [{"type": "poll.keys", "id": poll["id"], "keys": args["keys"], "to": TO_CHAIR}]


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
    return [
        {
            "type": "ballot.claimed",
            "id": poll["id"],
            "voter": voter,
            "by": actor.pid,
            "at": ts,
            "w": weight,
            "blinded": args["blinded"],
            "to": [*TO_CHAIR, f"pid:{actor.pid}"],
        }
    ]


def deposit_problem(
    state: State,
    poll: Poll,
    ballot: dict[str, Any],
    ts: int,
    fresh: Mapping[str, Ballot] | None = None,
) -> Refused | None:
    """Why ``ballot`` cannot go into ``poll``'s box now, or ``None`` if it can (or is in).

    ``ballot`` is shaped by :func:`check_ballot`; ``fresh`` holds ballots of the same batch
    that are not in the box yet (they count as in it).
    """
    if not poll["secret"]:
        return Refused("this is an open ballot", code="open_ballot")
    if poll["state"] not in (PollState.OPEN, PollState.CLOSED) or poll["sealed"]:
        return Refused(
            f"the poll is {poll['state']} and its box is sealed", code=f"poll_is_{poll['state']}"
        )
    late = poll["state"] == PollState.CLOSED or closed_by_timer(poll, ts)
    prior = _prior(poll, fresh, ballot["token"])
    if prior is not None:
        if prior["rev"] == ballot["rev"] and prior["choice"] == ballot["choice"]:
            return None  # already in the box: a retry
        if ballot["rev"] <= prior["rev"]:
            return Refused("a later version of this ballot is in the box", code="stale_ballot")
        if not poll["change"]:
            return Refused("ballots cannot be changed in this poll", code="already_voted")
        if late:
            return Refused("the poll is closed", code="poll_is_closed")
        if ballot["reveal"] is None or not blind.follows(
            ballot["reveal"], ballot["rev"] - prior["rev"], prior["last"]
        ):
            return Refused(
                "this change does not prove it comes from the ballot's owner", code="bad_ballot"
            )
    else:
        key = (poll["keys"] or {}).get(str(ballot["w"]))
        if key is None:
            return Refused("no key for this weight", code="bad_ballot")
        data = blind.message(state["meta"]["room"], poll["id"], ballot["w"], ballot["token"])
        if not blind.verify(blind.PublicKey.from_wire(key), data, int(ballot["sig"], 16)):
            return Refused("the ballot's signature does not verify", code="bad_ballot")
        if ballot["rev"] and (
            ballot["reveal"] is None
            or not blind.follows(ballot["reveal"], ballot["rev"], ballot["token"])
        ):
            return Refused("this change does not follow from the token", code="bad_ballot")
        if not poll["pending"].get(str(ballot["w"])):
            return Refused("no claimed ballot is waiting for this one", code="no_claim")
    try:
        check_choice(poll, ballot["choice"])
    except Refused as exc:
        return exc
    return None


def _prior(poll: Poll, fresh: Mapping[str, Ballot] | None, token: str) -> Ballot | None:
    if fresh is not None and token in fresh:
        return fresh[token]
    return poll["ballots"].get(token)


def decide_deposit(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    poll = get_poll(state, args["poll"])
    events: list[Event] = []
    # A working copy that sees this batch's own ballots (a batch may hold a ballot and its
    # change); the fold applies the events afterwards, decide leaves the state alone.
    fresh: dict[str, Ballot] = {}
    work: Poll = {
        **poll,
        "pending": dict(poll["pending"]),
        "counts": {k: list(v) for k, v in poll["counts"].items()},
        "cast": list(poll["cast"]),
    }
    for ballot in sorted(args["ballots"], key=lambda b: (b["token"], b["rev"])):
        if deposit_problem(state, work, ballot, ts, fresh) is not None:
            continue  # the node told its voter already; a lost race changes nothing
        prior = _prior(work, fresh, ballot["token"])
        if prior is not None and prior["rev"] == ballot["rev"]:
            continue
        last = ballot["reveal"] or ballot["token"]
        sig = ballot["sig"] if prior is None else prior["sig"]
        deposited: BallotDeposited = {
            "type": "ballot.deposited",
            "id": poll["id"],
            "token": ballot["token"],
            "receipt": blind.receipt(ballot["token"]),
            "choice": ballot["choice"],
            "w": ballot["w"],
            "rev": ballot["rev"],
            "last": last,
            "sig": sig,
            "old": prior["choice"] if prior is not None else None,
            "to": TO_CHAIR,
        }
        events.append(deposited)
        fresh[ballot["token"]] = {
            "rev": ballot["rev"],
            "choice": ballot["choice"],
            "w": ballot["w"],
            "last": last,
            "sig": sig,
        }
        if prior is None:
            work["pending"][str(ballot["w"])] -= 1
        else:
            tally.add(work, prior["choice"], ballot["w"], -1)
        tally.add(work, ballot["choice"], ballot["w"])
    if (
        poll["state"] == PollState.CLOSED
        and not poll["sealed"]
        and events
        and not any(work["pending"].values())
    ):
        work["ballots"] = {**poll["ballots"], **fresh}
        events += seal_events(state, work, ts)
    return events


def apply_keys(state: State, event: PollKeys) -> None:
    poll = find_poll(state, event["id"])
    if poll is not None:
        poll["keys"] = copy.deepcopy(event["keys"])


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
    if poll is None or "counts" not in poll:
        return
    mark_dirty(poll)
    w = str(event["w"])
    if event["old"] is None:
        poll["pending"][w] = poll["pending"].get(w, 0) - 1
    else:
        tally.add(poll, event["old"], event["w"], -1)
    tally.add(poll, event["choice"], event["w"])
    if "ballots" in poll:
        poll["ballots"][event["token"]] = {
            "rev": event["rev"],
            "choice": event["choice"],
            "w": event["w"],
            "last": event["last"],
            "sig": event["sig"],
        }
