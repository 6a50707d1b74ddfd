"""The room itself: presence, roles, the raised-hand queue, speakers and the agenda.

Pure: ``decide`` functions look at the state and return events or raise ``Refused``;
``apply`` functions fold one event into the state. No I/O, no clocks: time arrives as the
log entry's timestamp.

State (``state["core"]``)::

    people   {pid: {pid, name, role, org, country, lang, conns: [conn…], since, booth?, pair?}}
             (``person.joined`` carries the whole record, the same shape)
    hands    [pid…]          the queue, first raised first
    raised   {pid: ts}       when each hand in the queue went up (the chair's waiting times)
    speakers [pid…]          who has the floor (the chair may give it to several)
    floor_since {pid: ts}    when each speaker got the floor (the chair's speaking clock)
    agenda   [{title, titles, start, minutes}…], current: index or -1 before the first item
    notice   {text, ts} | None   the chair's latest announcement
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from . import invites
from .errors import BadArgs, Refused
from .events import (
    AgendaCurrent,
    FloorGranted,
    FloorRevoked,
    HandLowered,
    HandRaised,
    NoticePosted,
    PersonJoined,
    PersonLeft,
)
from .state import CoreState, Person
from .types import (
    ACTIVE,
    CAPTIONER,
    INTERPRETER,
    MODERATOR,
    OBSERVER,
    PANELIST,
    PARTICIPANT,
    ROLES,
    STAFF,
    SYSTEM,
    Actor,
    Command,
    Event,
    RoomConfig,
    Slice,
    State,
    arg_int,
    arg_str,
    by_name,
    no_args,
)

MAX_NOTICE = 500
HAND_ROLES = frozenset({PARTICIPANT, PANELIST, MODERATOR})


def init(config: RoomConfig) -> CoreState:
    return {
        "title": config.title,
        "floor": config.floor,
        "people": {},
        "hands": [],
        "raised": {},
        "speakers": [],
        "floor_since": {},
        "agenda": [
            {"title": a.title, "titles": dict(a.titles), "start": a.start, "minutes": a.minutes}
            for a in config.agenda
        ],
        "current": -1,
        "notice": None,
    }


# --- queries: what other slices read of the room (never its dicts directly) -----------------


def people(state: State) -> Mapping[str, Person]:
    """Everyone who ever joined the room, by pid (online or not)."""
    return state["core"]["people"]


def find(state: State, pid: str) -> Person | None:
    """The person ``pid``, or ``None``."""
    return state["core"]["people"].get(pid)


def person(state: State, pid: str) -> Person:
    """The person ``pid`` or ``Refused(unknown_person)``."""
    found = state["core"]["people"].get(pid)
    if found is None:
        raise Refused(f"nobody with id {pid!r} is in this room", code="unknown_person")
    return found


def is_online(state: State, pid: str) -> bool:
    p = state["core"]["people"].get(pid)
    return bool(p and p["conns"])


def online(state: State) -> list[Person]:
    """The people with at least one connection open, in order of arrival."""
    return [p for p in state["core"]["people"].values() if p["conns"]]


def speakers(state: State) -> list[str]:
    """Who has the floor, in the order the chair gave it."""
    return list(state["core"]["speakers"])


def has_floor(state: State, pid: str) -> bool:
    return pid in state["core"]["speakers"]


def moderators(state: State) -> list[str]:
    """The moderators who ever joined (their microphone feeds the floor)."""
    return [pid for pid, p in state["core"]["people"].items() if p["role"] == MODERATOR]


def floor_language(state: State) -> str:
    return state["core"]["floor"]


# --- presence (given by the node, never by a client) -------------------------------------


def check_join(args: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: arg_str(args, k, max_len=120, required=False) for k in ("org", "country", "lang")
    }
    out["pid"] = arg_str(args, "pid", max_len=64)
    out["name"] = arg_str(args, "name", max_len=120)
    out["role"] = arg_str(args, "role", max_len=20)
    out["conn"] = arg_str(args, "conn", max_len=64)
    if out["role"] not in ROLES:
        raise BadArgs(f"unknown role {out['role']!r}")
    # The invite's booth and languages: kept when shaped (channels.py checks the codes).
    booth = args.get("booth")
    if isinstance(booth, str) and len(booth) <= 20:
        out["booth"] = booth
    pair = args.get("pair")
    if isinstance(pair, list):
        out["pair"] = [x for x in pair if isinstance(x, str) and len(x) <= 20][:8]
    return out


def decide_join(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    """``person.joined {person, conn}``: ``person`` is the whole record as the state will
    hold it (the shape of ``people`` values, ``conns`` included), ``conn`` the new one.

    Refused (``not_representative``) when the invite names a member organisation but not
    one of its representatives (the node checks it before, the fold again)."""
    if args["role"] != OBSERVER and args["org"] is not None:
        reps = invites.representatives(state, args["org"])
        invites.check_representative(reps, args["org"], args["name"])
    prior = state["core"]["people"].get(args["pid"])
    record: Person = {
        "pid": args["pid"],
        "name": args["name"],
        "role": args["role"],
        "org": args["org"],
        "country": args["country"],
        "lang": args["lang"],
        "conns": list(prior["conns"]) if prior is not None else [],
        # A reconnect may bring a new UI language, never a second person.
        "since": prior["since"] if prior is not None else ts,
    }
    if "booth" in args:
        record["booth"] = args["booth"]
    elif prior is not None and "booth" in prior:
        record["booth"] = prior["booth"]
    if "pair" in args:
        record["pair"] = list(args["pair"])
    elif prior is not None and "pair" in prior:
        record["pair"] = list(prior["pair"])
    if args["conn"] not in record["conns"]:
        record["conns"].append(args["conn"])
    return [{"type": "person.joined", "person": record, "conn": args["conn"]}]


def decide_leave(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    p = state["core"]["people"].get(args["pid"])
    if p is None or args["conn"] not in p["conns"]:
        return []  # already gone: leaving twice is not an error
    return [{"type": "person.left", "pid": args["pid"], "conn": args["conn"]}]


def check_leave(args: dict[str, Any]) -> dict[str, Any]:
    return {"pid": arg_str(args, "pid", max_len=64), "conn": arg_str(args, "conn", max_len=64)}


def apply_joined(state: State, event: PersonJoined) -> None:
    # A copy: the event is also kept for resuming clients and must not change with the state.
    state["core"]["people"][event["person"]["pid"]] = copy.deepcopy(event["person"])


def apply_left(state: State, event: PersonLeft) -> None:
    p = state["core"]["people"].get(event["pid"])
    if p is not None and event["conn"] in p["conns"]:
        p["conns"].remove(event["conn"])


# --- hands and the floor -------------------------------------------------------------------


def check_target(args: dict[str, Any]) -> dict[str, Any]:
    return {"pid": arg_str(args, "pid", max_len=64, required=False)}


def decide_raise(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    core = state["core"]
    person(state, actor.pid)
    if actor.pid in core["hands"]:
        raise Refused("your hand is already raised", code="hand_already_raised")
    if actor.pid in core["speakers"]:
        raise Refused("you already have the floor", code="already_speaking")
    return [{"type": "hand.raised", "pid": actor.pid, "ts": ts}]


def _self_or_chair(actor: Actor, args: dict[str, Any], only: str) -> str:
    """The ``pid`` argument (the actor when absent); ``only`` says why another's is refused
    unless the actor chairs."""
    pid: str = args["pid"] or actor.pid
    if pid != actor.pid and actor.role != MODERATOR:
        raise Refused(only, code="forbidden")
    return pid


def decide_lower(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    pid = _self_or_chair(actor, args, "only the chair may lower someone else's hand")
    if pid not in state["core"]["hands"]:
        raise Refused("that hand is not raised", code="hand_not_raised")
    return [{"type": "hand.lowered", "pid": pid, "by": actor.pid}]


def decide_grant(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    pid = args["pid"]
    if pid is None:
        hands = state["core"]["hands"]
        if not hands:
            raise Refused("no hand is raised", code="queue_empty")
        pid = hands[0]  # "next speaker": the first in the queue
    if person(state, pid)["role"] == OBSERVER:
        raise Refused("an observer does not take the floor", code="observer")
    if pid in state["core"]["speakers"]:
        raise Refused("that person already has the floor", code="already_speaking")
    return [{"type": "floor.granted", "pid": pid, "by": actor.pid, "ts": ts}]


def decide_revoke(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    pid = _self_or_chair(actor, args, "only the chair may take the floor back")
    if pid not in state["core"]["speakers"]:
        raise Refused("that person does not have the floor", code="not_speaking")
    return [{"type": "floor.revoked", "pid": pid, "by": actor.pid}]


def apply_raised(state: State, event: HandRaised) -> None:
    if event["pid"] not in state["core"]["hands"]:
        state["core"]["hands"].append(event["pid"])
        state["core"]["raised"][event["pid"]] = event["ts"]


def apply_lowered(state: State, event: HandLowered | FloorGranted) -> None:
    if event["pid"] in state["core"]["hands"]:
        state["core"]["hands"].remove(event["pid"])
    state["core"]["raised"].pop(event["pid"], None)


def apply_granted(state: State, event: FloorGranted) -> None:
    apply_lowered(state, event)
    if event["pid"] not in state["core"]["speakers"]:
        state["core"]["speakers"].append(event["pid"])
        state["core"]["floor_since"][event["pid"]] = event["ts"]


def apply_revoked(state: State, event: FloorRevoked) -> None:
    if event["pid"] in state["core"]["speakers"]:
        state["core"]["speakers"].remove(event["pid"])
    state["core"]["floor_since"].pop(event["pid"], None)


# --- agenda and notices ---------------------------------------------------------------------


def check_goto(args: dict[str, Any]) -> dict[str, Any]:
    return {"index": arg_int(args, "index", lo=-1, hi=10_000)}


def decide_goto(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    index = args["index"]
    if index >= len(state["core"]["agenda"]):
        raise Refused(f"the agenda has no item {index}", code="no_such_item")
    return [{"type": "agenda.current", "index": index, "ts": ts}]


def decide_next(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    index = state["core"]["current"] + 1
    if index >= len(state["core"]["agenda"]):
        raise Refused("the agenda is at its last item", code="agenda_end")
    return [{"type": "agenda.current", "index": index, "ts": ts}]


def apply_current(state: State, event: AgendaCurrent) -> None:
    state["core"]["current"] = event["index"]


def check_notice(args: dict[str, Any]) -> dict[str, Any]:
    text = arg_str(args, "text", max_len=MAX_NOTICE)
    assert text is not None
    return {"text": text.strip()}


def decide_notice(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    return [{"type": "notice", "text": args["text"], "ts": ts, "by": actor.pid}]


def apply_notice(state: State, event: NoticePosted) -> None:
    state["core"]["notice"] = {"text": event["text"], "ts": event["ts"]} if event["text"] else None


SPEAKING_ROLES = frozenset({PARTICIPANT, PANELIST, MODERATOR})

SLICE = Slice(
    name="core",
    init=init,
    commands=by_name(
        Command("join", frozenset({SYSTEM}), check_join, decide_join),
        Command("leave", frozenset({SYSTEM}), check_leave, decide_leave),
        Command("hand.raise", HAND_ROLES, no_args, decide_raise),
        Command("hand.lower", ACTIVE, check_target, decide_lower),
        Command("floor.grant", STAFF, check_target, decide_grant),
        Command("floor.revoke", ACTIVE, check_target, decide_revoke),
        Command("agenda.goto", STAFF, check_goto, decide_goto),
        Command("agenda.next", STAFF, no_args, decide_next),
        Command("notice.post", STAFF, check_notice, decide_notice),
    ),
    apply={
        "person.joined": apply_joined,
        "person.left": apply_left,
        "hand.raised": apply_raised,
        "hand.lowered": apply_lowered,
        "floor.granted": apply_granted,
        "floor.revoked": apply_revoked,
        "agenda.current": apply_current,
        "notice": apply_notice,
    },
)

__all__ = [
    "SLICE",
    "people",
    "find",
    "person",
    "is_online",
    "online",
    "speakers",
    "has_floor",
    "moderators",
    "floor_language",
    "INTERPRETER",
    "CAPTIONER",
]
