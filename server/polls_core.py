"""Polls: the rules every part shares — lifecycle, eligibility, proxies, results. Pure.

Used by :mod:`polls` (the slice) and :mod:`polls_secret` (secret ballots in the fold).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, TypedDict, cast

from . import polldefs, rooms, tally
from .errors import BadArgs, Refused
from .events import PollSealed
from .state import (
    Amount,
    FinalResult,
    Poll,
    PollDefinition,
    Progress,
    PublicPoll,
    Revealed,
    VoteRecord,
)
from .types import MODERATOR, PANELIST, PARTICIPANT, Actor, Event, State, arg_str

GRACE_MS = 10_000
"""How long a closed secret poll waits for ballots claimed before the close."""

PROGRESS_MS = 250
"""The chair's live count is recomputed at most this often (log time) while ballots flow."""

VOTER_ROLES = frozenset({PARTICIPANT, PANELIST})

PROXY_ROLES = frozenset({PARTICIPANT, PANELIST, MODERATOR})

TO_CHAIR = ["role:moderator"]

HEX = frozenset("0123456789abcdef")


class PollState(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    CLOSED = "closed"
    PUBLISHED = "published"


MOVES = {
    PollState.DRAFT: PollState.OPEN,
    PollState.OPEN: PollState.CLOSED,
    PollState.CLOSED: PollState.PUBLISHED,
}

DEFINITION = polldefs.FIELDS

PUBLIC = (
    "id",
    *DEFINITION,
    "state",
    "opened_at",
    "closes_at",
    "closed_at",
    "sealed",
    "published_at",
    "keys",
    "seal",
    "proxies",
)


def _definition(poll: PollDefinition) -> PollDefinition:
    """A deep copy of the definition part (``DEFINITION``) of a definition or a poll."""
    part: PollDefinition = {
        "question": poll["question"],
        "kind": poll["kind"],
        "max": poll["max"],
        "options": poll["options"],
        "electorate": poll["electorate"],
        "secret": poll["secret"],
        "change": poll["change"],
        "seconds": poll["seconds"],
        "quorum": poll["quorum"],
        "threshold": poll["threshold"],
        "mix": poll["mix"],
    }
    return copy.deepcopy(part)


def new_poll(definition: PollDefinition, poll_id: str) -> Poll:
    d = _definition(definition)
    return {
        **d,
        "id": poll_id,
        "state": PollState.DRAFT.value,
        "opened_at": None,
        "closes_at": None,
        "closed_at": None,
        "sealed": False,
        "published_at": None,
        "keys": None,
        "seal": None,
        "proxies": {},
        "voted": {},
        "pending": {},
        "ballots": {},
        "counts": tally.empty_counts(d["options"]),
        "cast": [0, 0],
        "progress": None,
        "progress_at": None,
        "dirty": False,
        "result": None,
    }


def public(poll: PublicPoll) -> PublicPoll:
    """The ``PUBLIC`` part of a poll, copied."""
    return {
        "id": poll["id"],
        **_definition(poll),
        "state": poll["state"],
        "opened_at": poll["opened_at"],
        "closes_at": poll["closes_at"],
        "closed_at": poll["closed_at"],
        "sealed": poll["sealed"],
        "published_at": poll["published_at"],
        "keys": copy.deepcopy(poll["keys"]),
        "seal": poll["seal"],
        "proxies": dict(poll["proxies"]),
    }


def public_result(result: FinalResult | None) -> FinalResult | None:
    """What everyone is sent of a published result: all of it but an open vote's roll call.

    The roll call (a line per voter) is for the chair, who has it from ``poll.sealed``, and
    for the minutes (the exports, server/web/results.py); no voter's page shows it. Sent in
    every ``poll.published``, it made the event O(voters) per page: at 5,000 participants a
    quick poll's result took ~20 s to reach every page (docs/benchmarks.md)."""
    if result is None or "roll_call" not in result:
        return result
    out = cast(FinalResult, {k: v for k, v in result.items() if k != "roll_call"})
    return out


def public_poll(poll: PublicPoll, voted: dict[str, VoteRecord]) -> Poll:
    """``poll``'s public part and ``voted``: a poll as those who are not the chair hold it
    (no ballot box, no running totals)."""
    p = public(poll)
    return {
        "id": p["id"],
        "question": p["question"],
        "kind": p["kind"],
        "max": p["max"],
        "options": p["options"],
        "electorate": p["electorate"],
        "secret": p["secret"],
        "change": p["change"],
        "seconds": p["seconds"],
        "quorum": p["quorum"],
        "threshold": p["threshold"],
        "mix": p["mix"],
        "state": p["state"],
        "opened_at": p["opened_at"],
        "closes_at": p["closes_at"],
        "closed_at": p["closed_at"],
        "sealed": p["sealed"],
        "published_at": p["published_at"],
        "keys": p["keys"],
        "seal": p["seal"],
        "proxies": p["proxies"],
        "voted": voted,
    }


def get_poll(state: State, poll_id: str) -> Poll:
    poll = state["polls"]["polls"].get(poll_id)
    if poll is None:
        raise Refused(f"there is no poll {poll_id!r}", code="unknown_poll")
    return poll


def move(poll: PublicPoll, to: PollState) -> None:
    """Refuse unless ``poll`` may move to ``to`` now; the code names the state it is in."""
    now = PollState(poll["state"])
    if MOVES.get(now) is not to:
        raise Refused(
            f"the poll is {now.value}; it cannot become {to.value}", code=f"poll_is_{now.value}"
        )


def closed_by_timer(poll: PublicPoll, ts: int) -> bool:
    return poll["closes_at"] is not None and ts >= poll["closes_at"]


def must_be_open(poll: PublicPoll, ts: int) -> None:
    if poll["state"] != PollState.OPEN:
        raise Refused(f"the poll is {poll['state']}", code=f"poll_is_{poll['state']}")
    if closed_by_timer(poll, ts):
        raise Refused("the poll's time is up", code="poll_is_closed")


def holder(proxies: Mapping[str, str], member: str) -> str:
    """Who casts ``member``'s ballot: follow its proxy (and, if allowed, the chain)."""
    seen = {member}
    while member in proxies:
        member = proxies[member]
        if member in seen:  # a cycle is refused when given; never loop on a bad log
            break
        seen.add(member)
    return member


def voter_for(state: State, poll: Poll, actor: Actor, on_behalf: str | None) -> tuple[str, int]:
    """The voter key (member id, or pid in a quick poll) and weight this actor casts for."""
    person = rooms.find(state, actor.pid)
    if person is None or not rooms.is_online(state, actor.pid):
        raise Refused("you are not present in this room", code="not_present")
    if poll["electorate"] == "present":
        if on_behalf is not None:
            raise Refused("proxies apply to formal votes only", code="no_proxy")
        return actor.pid, 100
    roll = state["polls"]["roll"]
    org = person["org"]
    if org is None or org not in roll:
        raise Refused("your organisation is not on the voter roll", code="not_on_roll")
    member = on_behalf or org
    if member not in roll:
        raise Refused(f"{member!r} is not on the voter roll", code="not_on_roll")
    cast_by = holder(poll["proxies"], member)
    if member != org and cast_by != org:
        raise Refused(
            f"{roll[org]['name']} holds no proxy for {roll[member]['name']}", code="no_proxy"
        )
    if member == org and cast_by != org:
        raise Refused(f"your vote is delegated to {roll[cast_by]['name']}", code="delegated")
    return member, int(roll[member]["w"])


def check_choice(poll: PollDefinition, choice: list[str]) -> None:
    ids = {o["id"] for o in poll["options"]}
    for option in choice:
        if option not in ids:
            raise Refused(f"the poll has no option {option!r}", code="unknown_option")
    if len(set(choice)) != len(choice):
        raise Refused("an option is chosen twice", code="duplicate_choice")
    if not choice:
        raise Refused("choose an option", code="no_choice")
    if len(choice) > poll["max"]:
        raise Refused(f"choose at most {poll['max']} option(s)", code="too_many_choices")


def already_voted(state: State, poll: Poll, voter: str) -> Refused:
    if poll["electorate"] == "roll":
        name = state["polls"]["roll"][voter]["name"]
        return Refused(f"{name} has already voted in this poll", code="already_voted")
    return Refused("you have already voted in this poll", code="already_voted")


def electorate(state: State, poll: Poll) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(count, weight)`` of the whole electorate and of the part of it present now."""
    online = [p for p in rooms.online(state) if p["role"] in VOTER_ROLES]
    if poll["electorate"] == "present":
        pids = {p["pid"] for p in online} | set(poll["voted"])
        return (len(pids), 100 * len(pids)), (len(pids), 100 * len(pids))
    roll = state["polls"]["roll"]
    orgs = {p["org"] for p in online}
    here = [m for m in roll if holder(poll["proxies"], m) in orgs or m in poll["voted"]]
    return (
        (len(roll), sum(m["w"] for m in roll.values())),
        (len(here), sum(roll[m]["w"] for m in here)),
    )


def progress(state: State, poll: Poll) -> Progress:
    """The chair's live count. For a secret poll, the turnout only: the ballots are sealed,
    so the options stay at zero, the outcome is ``secret`` and the quorum counts claims.
    A roll poll also lists the members who have not voted yet (a claim counts as voted), in
    roll order: the chair calls on them before the close."""
    eligible, present = electorate(state, poll)
    turnout: Amount = {
        "n": len(poll["voted"]),
        "w": sum(v["w"] for v in poll["voted"].values()),
    }
    waiting: list[str] | None = None
    if poll["electorate"] == "roll":  # who has not voted: participation, never a choice
        waiting = [m for m in state["polls"]["roll"] if m not in poll["voted"]]
    if poll["secret"]:
        blank: Poll = {
            **poll,
            "counts": tally.empty_counts(poll["options"]),
            "cast": [turnout["n"], turnout["w"]],
        }
        result = tally.result(blank, eligible, present)
        result["options"] = [{"id": o["id"], "n": 0, "w": 0} for o in poll["options"]]
        result["outcome"] = "secret"
        result["winner"] = None
    else:
        result = tally.result(poll, eligible, present)
    out = cast(Progress, {**result, "turnout": turnout})
    if waiting is not None:
        out["not_voted"] = waiting
    return out


def shown(poll: Poll, choice: list[str]) -> str | list[str]:
    """A ballot's choice as results publish it: the list for a ``multiple`` poll, else the
    one option id (ballots, state and events keep the list: it is what the tally adds)."""
    return list(choice) if poll["kind"] == "multiple" else choice[0]


class RevealSummary(TypedDict):
    """What the fold made of a secret poll's opened ballots (:mod:`polls_secret`)."""

    ballots: list[Revealed]
    counted: int
    invalid: int
    late: int
    too_few: bool


def final_result(
    state: State, poll: Poll, ts: int, revealed: RevealSummary | None = None
) -> FinalResult:
    eligible, present = electorate(state, poll)
    r = tally.result(poll, eligible, present)
    out: FinalResult = {
        "options": r["options"],
        "ballots": r["ballots"],
        "weight": r["weight"],
        "eligible": r["eligible"],
        "present": r["present"],
        "quorum": r["quorum"],
        "threshold": r["threshold"],
        "outcome": r["outcome"],
        "winner": r["winner"],
        "turnout": {"n": len(poll["voted"]), "w": sum(v["w"] for v in poll["voted"].values())},
        "opened_at": poll["opened_at"],
        "closed_at": poll["closed_at"],
        "sealed_at": ts,
        "missing": 0,
    }
    if poll["secret"]:
        summary = revealed or {
            "ballots": [],
            "counted": 0,
            "invalid": 0,
            "late": 0,
            "too_few": True,
        }
        out["missing"] = max(0, len(poll["voted"]) - summary["counted"])
        out["trackers"] = sorted(poll["ballots"])
        out["revealed"] = [
            {"choice": shown(poll, list(b["choice"])), "w": b["w"]} for b in summary["ballots"]
        ]
        out["counted"] = summary["counted"]
        out["invalid"] = summary["invalid"]
        out["late"] = summary["late"]
        out["mix"] = poll["mix"]
        if summary["too_few"]:
            out["outcome"] = "too_few"
            out["winner"] = None
        out["keys"] = poll["keys"]
    else:
        roll = state["polls"]["roll"]
        out["roll_call"] = [
            {
                "voter": voter,
                "name": roll[voter]["name"] if voter in roll else _name(state, voter),
                "by": _name(state, v["by"]),
                "choice": shown(poll, v.get("choice", [])),
                "w": v["w"],
            }
            for voter, v in sorted(poll["voted"].items())
        ]
    return out


def _name(state: State, pid: str) -> str:
    person = rooms.find(state, pid)
    return pid if person is None else person["name"]


def seal_events(
    state: State, poll: Poll, ts: int, revealed: RevealSummary | None = None
) -> list[Event]:
    sealed: PollSealed = {
        "type": "poll.sealed",
        "id": poll["id"],
        "at": ts,
        "result": final_result(state, poll, ts, revealed),
        "to": list(TO_CHAIR),
    }
    return [sealed]


def poll_arg(args: dict[str, Any]) -> str:
    value = arg_str(args, "poll", max_len=40)
    assert value is not None
    return value


def hex_arg(args: dict[str, Any], key: str, max_len: int, required: bool = True) -> str | None:
    value = arg_str(args, key, max_len=max_len, required=required)
    if value is not None and (not value or not set(value) <= HEX):
        raise BadArgs(f"'{key}' must be lower-case hexadecimal")
    return value


def choice_arg(args: dict[str, Any]) -> list[str]:
    choice = args.get("choice")
    if isinstance(choice, str):
        choice = [choice]
    if (
        not isinstance(choice, list)
        or len(choice) > polldefs.MAX_OPTIONS
        or not all(isinstance(c, str) and len(c) <= 40 for c in choice)
    ):
        raise BadArgs("'choice' must be an option id or a list of option ids")
    return choice


def weight_classes(state: State, poll: PublicPoll) -> list[int]:
    """The weights (hundredths) a secret poll needs a signing key for."""
    if poll["electorate"] == "present":
        return [100]
    return sorted({int(m["w"]) for m in state["polls"]["roll"].values()})


def find_poll(state: State, poll_id: str) -> Poll | None:
    return state["polls"]["polls"].get(poll_id)


def mark_dirty(poll: Poll) -> None:
    if "dirty" in poll:  # the full state only: a client's copy has no use for it
        poll["dirty"] = True
