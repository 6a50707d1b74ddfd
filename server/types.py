"""Types shared by the pure state machines and the I/O shell, defined once.

A room's state is plain JSON-able data (dicts, lists, strings, numbers), one key per
*slice*: ``core`` (rooms.py), ``channels`` (channels.py), ``polls`` (polls.py), ``audio``
(audio.py) and ``meta`` (the fold's own bookkeeping). Being plain data, it is its own
snapshot format and digest input, and a browser can hold the same shape. Its shape is
typed in :mod:`state`, the events' in :mod:`events`; both are re-exported here.

The room log holds *entries*: one accepted command each, with who gave it and the issuing
node's clock. Every node folds entries in log order; a slice's ``decide`` turns an entry
into *events* (or refuses it) and its ``apply`` functions fold events into the state. The
same events go to clients, which apply them to their copy of the snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

from .errors import BadArgs
from .events import EVENT_TYPES as EVENT_TYPES
from .events import Event as Event
from .state import Meta as Meta
from .state import State as State


class ActorWire(TypedDict):
    pid: str
    role: str
    conn: str | None


class Entry(TypedDict):
    """One log entry: a command as given, by whom, at the issuing node's clock (ms)."""

    cid: str
    actor: ActorWire
    cmd: str
    args: NotRequired[dict[str, Any]]
    """Free-form until the command's ``check`` has shaped them."""
    ts: int


PARTICIPANT = "participant"
PANELIST = "panelist"
INTERPRETER = "interpreter"
CAPTIONER = "captioner"
MODERATOR = "moderator"
OBSERVER = "observer"
"""Sees and hears everything public, never votes, raises no hand: gives no command but its
own channel choice; not counted in the attendance."""
SYSTEM = "system"
"""Commands a node gives on its own behalf (join, leave, tick); never from a client."""

ROLES = (PARTICIPANT, PANELIST, INTERPRETER, CAPTIONER, MODERATOR, OBSERVER)
EVERYONE = frozenset(ROLES)
ACTIVE = EVERYONE - {OBSERVER}
"""Every role that takes part (an observer only watches and listens)."""
STAFF = frozenset({MODERATOR})


@dataclass(frozen=True)
class Actor:
    """Who gave a command: from the verified invite token, never from the frame."""

    pid: str
    role: str
    conn: str | None = None

    def to_wire(self) -> ActorWire:
        return {"pid": self.pid, "role": self.role, "conn": self.conn}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Actor:
        return cls(pid=data["pid"], role=data["role"], conn=data.get("conn"))


Decide = Callable[[State, Actor, dict[str, Any], int], list[Event]]
Check = Callable[[dict[str, Any]], dict[str, Any]]
Apply = Callable[[State, Any], None]
"""Folds one event into the state. Each applier declares the event type it takes (a
``TypedDict`` of :mod:`events`); a slice's ``apply`` maps that type's tag to it, and
tests/test_events.py checks that every applier's annotation matches its tag."""
Viewer = Mapping[str, Any]
"""The person a view is for: their invite's claims (``pid``, ``role``, ``booth``, ``org``)."""


@dataclass(frozen=True)
class Command:
    """One command a client (or a node, for ``SYSTEM``) may give.

    ``check`` validates the arguments' shape without looking at state (the issuing node
    runs it before appending); ``decide`` runs inside the fold on every node, against the
    state at that point of the log, and returns events or raises ``Refused``.
    """

    name: str
    roles: frozenset[str]
    check: Check
    decide: Decide


def by_name(*commands: Command) -> dict[str, Command]:
    """A slice's command table, keyed by each command's own name.

    A name given twice is a ``ValueError``: a dict built by hand would keep the last one
    silently, and the first command would never be decided.
    """
    table: dict[str, Command] = {}
    for command in commands:
        if command.name in table:
            raise ValueError(f"command {command.name!r} is given twice")
        table[command.name] = command
    return table


@dataclass(frozen=True)
class AgendaItem:
    title: str
    start: str
    """ISO 8601 in UTC, e.g. ``2026-12-03T12:00:00Z``."""
    minutes: int
    titles: Mapping[str, str] = field(default_factory=dict)
    """The title in other assembly languages, by language code."""


@dataclass(frozen=True)
class Member:
    """A member organisation on the voter roll."""

    id: str
    name: str
    country: str
    weight: float = 1.0
    representatives: tuple[str, ...] = ()


@dataclass(frozen=True)
class RoomConfig:
    id: str
    title: str
    floor: str = "en"
    channels: tuple[str, ...] = ()
    agenda: tuple[AgendaItem, ...] = ()
    members: tuple[Member, ...] = ()
    fallback: str = "original"
    """What a channel with nobody on air carries: ``original`` (the floor) or ``silence``."""
    titles: Mapping[str, str] = field(default_factory=dict)
    """The room's title in other languages, by language code (the pages show their own)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Slice-specific settings from the room's config table (polls, booths, …)."""


@dataclass(frozen=True)
class Slice:
    """One pure state machine plugged into the fold.

    ``react`` sees the events the fold just applied (from any slice) and may answer with
    more; ``deadline``/``tick`` let a slice expire things at a log timestamp; ``view``
    trims the slice for one person's snapshot (``None`` for the full, trusted state).
    ``shared`` names keys of the slice's state that every person's view holds as they are
    (a roll of a thousand members): with ``personal`` — the view without them — a welcome
    encodes them once per log position for everyone (``Rules.view_parts``) instead of
    copying them per person.
    """

    name: str
    init: Callable[[RoomConfig], Mapping[str, object]]
    commands: Mapping[str, Command]
    apply: Mapping[str, Apply]
    view: Callable[[State, Viewer | None], Mapping[str, object]] | None = None
    react: Callable[[State, list[Event], int], list[Event]] | None = None
    deadline: Callable[[State], int | None] | None = None
    tick: Callable[[State, int], list[Event]] | None = None
    shared: tuple[str, ...] = ()
    personal: Callable[[State, Viewer | None], Mapping[str, object]] | None = None


# --- argument checks: small helpers every slice's ``check`` uses -------------------------


def arg_str(
    args: Mapping[str, Any],
    key: str,
    *,
    max_len: int = 200,
    required: bool = True,
    default: str | None = None,
) -> str | None:
    value = args.get(key, default)
    if value is None:
        if required:
            raise BadArgs(f"'{key}' is required")
        return None
    if not isinstance(value, str):
        raise BadArgs(f"'{key}' must be a string")
    if len(value) > max_len:
        raise BadArgs(f"'{key}' is longer than {max_len} characters")
    return value


def arg_int(
    args: Mapping[str, Any],
    key: str,
    *,
    lo: int | None = None,
    hi: int | None = None,
    required: bool = True,
    default: int | None = None,
) -> int | None:
    value = args.get(key, default)
    if value is None:
        if required:
            raise BadArgs(f"'{key}' is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadArgs(f"'{key}' must be an integer")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise BadArgs(f"'{key}' must be between {lo} and {hi}")
    return value


def no_args(args: dict[str, Any]) -> dict[str, Any]:
    return {}
