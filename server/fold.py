"""The fold: one room's log entries, in order, into one room's state. Pure.

Every node runs :func:`fold` on every entry of a room's log, in log order, and so ends with
the same state (tests compare :func:`digest`). Conflicts — two interpreters taking the air
at once on two nodes, two representatives of one member voting at once — are settled here,
by log order: the later entry is decided against a state that already holds the earlier one.

Call order for a node: :func:`new_state` once (or :func:`from_snapshot`), then :func:`fold`
for each entry. Clients receive the events :func:`fold` returns and apply them with
:func:`apply_events` to their copy of :func:`view`.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from typing import Any

from . import audio, channels, polls, rooms
from .errors import BadArgs, Forbidden, HemicycleError, UnknownType
from .protocol import canonical
from .types import SYSTEM, Actor, Command, Entry, Event, RoomConfig, Slice, State, no_args

MAX_OUTCOMES = 200_000
"""Command ids remembered for idempotent retries (oldest forgotten first)."""


def _decide_tick(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    events: list[Event] = []
    for s in SLICES:
        if s.tick is not None:
            events.extend(s.tick(state, ts))
    return events


TICK = Command("tick", frozenset({SYSTEM}), no_args, _decide_tick)

SLICES: tuple[Slice, ...] = (rooms.SLICE, channels.SLICE, polls.SLICE, audio.SLICE)
COMMANDS: dict[str, Command] = {"tick": TICK}
APPLY: dict[str, Any] = {}
for _s in SLICES:
    for _name, _cmd in _s.commands.items():
        assert _name not in COMMANDS, f"command {_name} defined twice"
        COMMANDS[_name] = _cmd
    for _type, _fn in _s.apply.items():
        assert _type not in APPLY, f"event {_type} applied twice"
        APPLY[_type] = _fn


@dataclass
class Outcome:
    """What folding one entry did: the events it applied, or the refusal."""

    events: list[Event] = field(default_factory=list)
    error: dict[str, str] | None = None
    duplicate: bool = False


def new_state(config: RoomConfig) -> State:
    state: State = {"meta": {"room": config.id, "last": None, "n": 0, "outcomes": {}}}
    for s in SLICES:
        state[s.name] = s.init(config)
    return state


def check(actor: Actor, name: str, args: Any) -> dict[str, Any]:
    """Validate a command without looking at state: known, allowed for the role, args shaped.

    The issuing node calls this before appending; :func:`fold` calls it again so that a
    log entry from a faulty node cannot bypass it.
    """
    command = COMMANDS.get(name)
    if command is None:
        raise UnknownType(f"unknown command {name!r}")
    if actor.role not in command.roles:
        raise Forbidden(f"a {actor.role} may not give {name!r}")
    if not isinstance(args, dict):
        raise BadArgs("'args' must be a map")
    return command.check(args)


def fold(state: State, entry_id: str, entry: Entry) -> Outcome:
    """Fold one log entry into ``state`` (in place) and say what happened.

    A command id already folded is a retry: nothing changes and the first outcome is
    repeated. A refused command changes nothing but the bookkeeping in ``meta``.
    """
    meta = state["meta"]
    meta["last"] = entry_id
    meta["n"] += 1
    cid = entry["cid"]
    outcomes = meta["outcomes"]
    if cid in outcomes:
        prior = outcomes[cid]
        return Outcome(error=prior, duplicate=True)
    actor = Actor.from_wire(entry["actor"])
    try:
        args = check(actor, entry["cmd"], entry.get("args", {}))
        events = COMMANDS[entry["cmd"]].decide(state, actor, args, entry["ts"])
    except HemicycleError as exc:
        outcomes[cid] = exc.to_wire()
        _forget_oldest(outcomes)
        return Outcome(error=exc.to_wire())
    _check_audiences(events)
    apply_events(state, events)
    for s in SLICES:
        if s.react is not None and events:
            more = s.react(state, events, entry["ts"])
            _check_audiences(more)
            apply_events(state, more)
            events.extend(more)
    outcomes[cid] = None
    _forget_oldest(outcomes)
    return Outcome(events=events)


def _check_audiences(events: list[Event]) -> None:
    for event in events:
        to = event.get("to")
        if to is not None and not isinstance(to, list):
            # A string here would be read as a list of characters and reach nobody.
            raise TypeError(f"event {event['type']!r}: 'to' must be a list of selectors")


def _forget_oldest(outcomes: dict[str, Any]) -> None:
    while len(outcomes) > MAX_OUTCOMES:
        del outcomes[next(iter(outcomes))]


def apply_events(state: State, events: list[Event]) -> None:
    for event in events:
        APPLY[event["type"]](state, event)


def next_deadline(state: State) -> int | None:
    """The earliest log time at which a ``tick`` would change something, if any."""
    times = [t for s in SLICES if s.deadline is not None if (t := s.deadline(state)) is not None]
    return min(times) if times else None


def view(state: State, person: dict[str, Any] | None) -> State:
    """A copy of the state fit for ``person`` (``None``: everything, for trusted tools)."""
    out: State = {"meta": {k: v for k, v in state["meta"].items() if k != "outcomes"}}
    for s in SLICES:
        out[s.name] = (
            s.view(state, person)
            if s.view is not None and person is not None
            else copy.deepcopy(state[s.name])
        )
    return out


def visible(event: Event, person: dict[str, Any]) -> bool:
    """Whether ``person`` may receive ``event``: its ``to`` names their pid, role or booth."""
    to = event.get("to")
    if to is None:
        return True
    keys = {"pid:" + person["pid"], "role:" + person["role"]}
    if person.get("booth"):
        keys.add("booth:" + person["booth"])
    return not keys.isdisjoint(to)


def digest(state: State) -> str:
    return hashlib.sha256(canonical(state)).hexdigest()


def from_snapshot(snapshot: State) -> State:
    return copy.deepcopy(snapshot)
