"""The fold: one room's log entries, in order, into one room's state. Pure.

Every node runs :func:`fold` on every entry of a room's log, in log order, and so ends with
the same state (tests compare :func:`digest`). Conflicts — two interpreters taking the air
at once on two nodes, two representatives of one member voting at once — are settled here,
by log order: the later entry is decided against a state that already holds the earlier one.

The rules are a :class:`Rules` built from a sequence of slices (:class:`types.Slice`); a
feature that brings its own pure slice builds its own ``Rules``. :data:`RULES` holds the
built-in slices, and the module functions delegate to it.

Call order for a node: :func:`new_state` once (or :func:`from_snapshot`), then :func:`fold`
for each entry. Clients receive the events :func:`fold` returns and apply them with
:func:`apply_events` to their copy of :func:`view`.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, TypeVar, cast

from . import audio, channels, invites, polls, rooms, stage
from .errors import BadArgs, Forbidden, HemicycleError, UnknownType
from .protocol import canonical
from .types import (
    INTERPRETER,
    SYSTEM,
    Actor,
    Apply,
    Command,
    Entry,
    Event,
    Meta,
    RoomConfig,
    Slice,
    State,
    no_args,
)

MAX_OUTCOMES = 200_000
"""Command ids remembered for idempotent retries (oldest forgotten first)."""

FORGET_BATCH = 1_000
"""Forgetting waits until this many ids more than ``MAX_OUTCOMES`` are remembered, then
drops the oldest at once: one pass over the dict's head per batch instead of one per fold
(deleting the oldest key of a dict leaves a tombstone that every later ``next(iter(d))``
walks over again). So a room remembers between 200,000 and 201,000 ids."""

DEFAULT_SLICES: tuple[Slice, ...] = (
    rooms.SLICE,
    channels.SLICE,
    polls.SLICE,
    audio.SLICE,
    stage.SLICE,
    invites.SLICE,
)


@dataclass
class Outcome:
    """What folding one entry did: the events it applied, or the refusal."""

    events: list[Event] = field(default_factory=list)
    error: dict[str, str] | None = None
    duplicate: bool = False


V = TypeVar("V")


def _claim(
    table: dict[str, V], owner: dict[str, str], given: Mapping[str, V], by: str, what: str
) -> None:
    """Put ``given`` (from slice ``by``) into ``table``; a key another slice gave is a
    ``ValueError`` naming both (``what``: the message's start, with ``{!r}`` for the key)."""
    for key, value in given.items():
        if key in table:
            raise ValueError(f"{what.format(key)} by both {owner[key]!r} and {by!r}")
        table[key] = value
        owner[key] = by


class Rules:
    """The slices of a room, put together: commands by name, appliers by event type.

    Built once from a sequence of slices; a command or an event type that two slices
    both claim (or a slice name used twice) is a ``ValueError`` naming both.
    """

    def __init__(self, slices: Sequence[Slice]) -> None:
        self.slices: tuple[Slice, ...] = tuple(slices)
        self.commands: dict[str, Command] = {
            "tick": Command("tick", frozenset({SYSTEM}), no_args, self._decide_tick)
        }
        self.apply: dict[str, Apply] = {}
        names: set[str] = set()
        command_owner: dict[str, str] = {"tick": "the fold"}
        event_owner: dict[str, str] = {}
        for s in self.slices:
            if s.name == "meta":
                raise ValueError("a slice cannot be named 'meta': it is the fold's own key")
            if s.name in names:
                raise ValueError(f"two slices are named {s.name!r}")
            names.add(s.name)
            _claim(self.commands, command_owner, s.commands, s.name, "command {!r} is given")
            _claim(self.apply, event_owner, s.apply, s.name, "event {!r} is applied")

    def _decide_tick(
        self, state: State, actor: Actor, args: dict[str, Any], ts: int
    ) -> list[Event]:
        events: list[Event] = []
        for s in self.slices:
            if s.tick is not None:
                events.extend(s.tick(state, ts))
        return events

    def new_state(self, config: RoomConfig) -> State:
        meta: Meta = {"room": config.id, "last": None, "n": 0, "outcomes": {}}
        state = _slots(cast(State, {"meta": meta}))
        for s in self.slices:
            state[s.name] = s.init(config)
        return cast(State, state)

    def check(self, actor: Actor, name: str, args: object) -> dict[str, Any]:
        """Validate a command without looking at state: known, allowed for the role, args
        shaped.

        The issuing node calls this before appending; :meth:`fold` calls it again so that
        a log entry from a faulty node cannot bypass it.
        """
        command = self.commands.get(name)
        if command is None:
            raise UnknownType(f"unknown command {name!r}")
        if actor.role not in command.roles:
            raise Forbidden(f"a {actor.role} may not give {name!r}")
        if not isinstance(args, dict):
            raise BadArgs("'args' must be a map")
        return command.check(args)

    def fold(self, state: State, entry_id: str, entry: Entry) -> Outcome:
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
            return Outcome(error=outcomes[cid], duplicate=True)
        actor = Actor.from_wire(entry["actor"])
        try:
            args = self.check(actor, entry["cmd"], entry.get("args", {}))
            events = self.commands[entry["cmd"]].decide(state, actor, args, entry["ts"])
        except HemicycleError as exc:
            outcomes[cid] = exc.to_wire()
            forget_oldest(outcomes)
            return Outcome(error=exc.to_wire())
        _check_audiences(events)
        self.apply_events(state, events)
        for s in self.slices:
            if s.react is not None and events:
                more = s.react(state, events, entry["ts"])
                _check_audiences(more)
                self.apply_events(state, more)
                events.extend(more)
        outcomes[cid] = None
        forget_oldest(outcomes)
        return Outcome(events=events)

    def apply_events(self, state: State, events: Iterable[Event]) -> None:
        for event in events:
            self.apply[event["type"]](state, event)

    def next_deadline(self, state: State) -> int | None:
        """The earliest log time at which a ``tick`` would change something, if any."""
        times = [
            t for s in self.slices if s.deadline is not None if (t := s.deadline(state)) is not None
        ]
        return min(times) if times else None

    def view(self, state: State, person: Mapping[str, Any] | None) -> State:
        """A copy of the state fit for ``person`` (``None``: everything, for trusted tools)."""
        meta = state["meta"]
        seen: Meta = {"room": meta["room"], "last": meta["last"], "n": meta["n"]}
        full = _slots(state)
        out = _slots(cast(State, {"meta": seen}))
        for s in self.slices:
            out[s.name] = (
                s.view(state, person)
                if s.view is not None and person is not None
                else copy.deepcopy(full[s.name])
            )
        return cast(State, out)

    def view_parts(self, state: State, person: Mapping[str, Any]) -> list[tuple[str, object, bool]]:
        """``view(state, person)`` as its parts, in order, each with whether every person
        sees it alike (a slice without ``view``, e.g. the room's roster). A part seen alike
        is the live state itself, not a copy: encode it at once, never keep or change it.
        The hub encodes those once per log position for all the welcomes made there."""
        meta = state["meta"]
        seen: Meta = {"room": meta["room"], "last": meta["last"], "n": meta["n"]}
        full = _slots(state)
        parts: list[tuple[str, object, bool]] = [("meta", seen, False)]
        for s in self.slices:
            if s.personal is not None:
                mine = cast(Mapping[str, object], full[s.name])
                sub = Parts((key, mine[key], True) for key in s.shared)
                sub += ((key, value, False) for key, value in s.personal(state, person).items())
                parts.append((s.name, sub, False))
            elif s.view is not None:
                parts.append((s.name, s.view(state, person), False))
            else:
                parts.append((s.name, full[s.name], True))
        return parts


class Parts(list[tuple[str, object, bool]]):
    """A slice's view as its parts (``Slice.shared`` then ``Slice.personal``), each with
    whether every person sees it alike: a map, for the hub to encode part by part."""


def _slots(state: State) -> MutableMapping[str, object]:
    """The state as a map of slice name → slice state, for code that handles any slice."""
    return cast(MutableMapping[str, object], state)


def _check_audiences(events: list[Event]) -> None:
    for event in events:
        to = cast(Mapping[str, object], event).get("to")
        if to is not None and not isinstance(to, list):
            # A string here would be read as a list of characters and reach nobody.
            raise TypeError(f"event {event['type']!r}: 'to' must be a list of selectors")


def forget_oldest(outcomes: dict[str, dict[str, str] | None]) -> None:
    """Forget the oldest command ids once ``FORGET_BATCH`` too many are remembered.

    Deterministic (the same entries leave the same ids on every node) and the dict stays
    plain data for snapshots; amortised O(1) per fold.
    """
    excess = len(outcomes) - MAX_OUTCOMES
    if excess < FORGET_BATCH:
        return
    for cid in list(islice(outcomes, excess)):
        del outcomes[cid]


RULES = Rules(DEFAULT_SLICES)
"""The built-in slices: core, channels, polls, audio, invites."""


def new_state(config: RoomConfig) -> State:
    return RULES.new_state(config)


def check(actor: Actor, name: str, args: object) -> dict[str, Any]:
    """:meth:`Rules.check` of the built-in rules."""
    return RULES.check(actor, name, args)


def fold(state: State, entry_id: str, entry: Entry) -> Outcome:
    """:meth:`Rules.fold` of the built-in rules."""
    return RULES.fold(state, entry_id, entry)


def apply_events(state: State, events: Iterable[Event]) -> None:
    RULES.apply_events(state, events)


def next_deadline(state: State) -> int | None:
    return RULES.next_deadline(state)


def view(state: State, person: Mapping[str, Any] | None) -> State:
    return RULES.view(state, person)


def visible(event: Mapping[str, object], person: Mapping[str, Any]) -> bool:
    """Whether ``person`` may receive ``event``: its ``to`` names their pid, role or booth.

    Selectors: ``pid:<pid>``, ``role:<role>``, ``booth:<lang>`` (anyone whose invite names
    that booth: its interpreters, a captioner of that channel) and ``interpreters:<lang>``
    (that booth's interpreters only: the booth's chat).
    """
    to = event.get("to")
    if to is None:
        return True
    if not isinstance(to, list):
        return False  # the fold refuses such events; a bad bus message reaches nobody
    return not selectors(person).isdisjoint(to)


def selectors(person: Mapping[str, Any]) -> set[str]:
    """The ``to`` selectors that reach ``person`` (:func:`visible`); a node indexes its
    connections by them, so a private event costs its recipients, not every connection."""
    keys = {"pid:" + person["pid"], "role:" + person["role"]}
    if person.get("booth"):
        keys.add("booth:" + person["booth"])
        if person["role"] == INTERPRETER:
            keys.add("interpreters:" + person["booth"])
    return keys


def digest(state: State) -> str:
    return hashlib.sha256(canonical(state)).hexdigest()


def from_snapshot(snapshot: State) -> State:
    return copy.deepcopy(snapshot)
