"""The one way a feature plugs into a node.

A feature (reactions, ballots, audio, recording, exports, …) is a :class:`Feature` subclass
overriding what it needs; the node is built from a list of them (``server/web/app.py``
``features()``). What a feature may bring, and when the node calls it:

``frames()``
    Client frame types it handles (``{"ballot": handler}``), exact names. The node builds one
    dispatch table from all features at start-up; a type claimed twice, or one of the node's
    own (``command``, ``ping``), stops the start with the feature's name.
``routes()``
    Its HTTP routes. A route may raise any :class:`~server.errors.HemicycleError`: the app's
    one exception handler turns it into a JSON answer with a status (``server/web/http.py``).
``running(node)``
    Its lifetime, an async context manager entered in list order once every room's replica
    has caught up with its log, and left in reverse order (the node uses an
    ``AsyncExitStack``: if a later feature fails to start, the earlier ones are closed).
    Node-wide things only: what a feature keeps per room is made in ``in_room``.
``in_room(node, hub)``
    Its part of one room (a ballot box, the media of a room), an async context manager
    entered once the room's replica has caught up and every feature runs, in list order,
    and left (in reverse) when the room closes or the node stops. A node with
    ``on_demand`` rooms opens a room on its first use and closes it when idle, so this
    may be entered and left many times while the feature runs.
``welcome(hub)``
    Keys it adds to the ``assembly`` part of every welcome in ``hub``'s room.
``folded(hub, entry_id, events)``
    Called after each fold of ``hub``'s room that produced events, once the feature runs.
    Synchronous and quick: it runs inside the fold loop (spawn a task for slow work).
``left(hub, sink)``
    Awaited when a connection leaves, before its ``leave`` is appended.

``slice``
    The pure state machine the feature brings, if any (a :class:`~server.types.Slice`: its
    commands, events and state). The node folds its own slices (``server/rooms.py``: the
    room, presence, hands, the floor, the agenda; then every feature's, in list order; then
    ``server/invites.py``: the room's invites); the shell never decides anything the fold
    does not decide again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from starlette.routing import BaseRoute

from ..types import Event, Slice

if TYPE_CHECKING:
    from .auth import Invites
    from .backends import Backends
    from .config import Assembly, Settings
    from .hub import RoomHub, Sink
    from .metrics import Metrics
    from .sessions import Session

FrameHandler = Callable[["Session", dict[str, Any]], Awaitable[None]]
"""``await handler(session, frame)``: raise a ``HemicycleError`` to refuse the frame."""

NODE_FRAMES = frozenset({"command", "ping"})
"""Frame types the node's sessions handle themselves."""


class Host(Protocol):
    """What a feature sees of the node that runs it (``server.node.app.Node`` is one)."""

    name: str
    settings: Settings
    assembly: Assembly
    backends: Backends
    metrics: Metrics
    invites: Invites
    hubs: dict[str, RoomHub]


class Feature:
    """A capability of the node. Override what the feature needs; the rest does nothing."""

    name = "feature"
    slice: Slice | None = None

    def frames(self) -> Mapping[str, FrameHandler]:
        return {}

    def routes(self) -> Sequence[BaseRoute]:
        return ()

    def welcome(self, hub: RoomHub) -> Mapping[str, Any]:
        return {}

    def folded(self, hub: RoomHub, entry_id: str, events: list[Event]) -> None:
        return None

    async def left(self, hub: RoomHub, sink: Sink) -> None:
        return None

    def running(self, node: Host) -> contextlib.AbstractAsyncContextManager[None]:
        return _idle()

    def in_room(self, node: Host, hub: RoomHub) -> contextlib.AbstractAsyncContextManager[None]:
        return _idle()


@contextlib.asynccontextmanager
async def _idle() -> AsyncIterator[None]:
    yield


def dispatch_table(features: Sequence[Feature]) -> dict[str, FrameHandler]:
    """One table of client frame types from all features; a type claimed twice is an error."""
    table: dict[str, FrameHandler] = {}
    owner: dict[str, str] = {}
    for feature in features:
        for kind, handler in feature.frames().items():
            if kind in NODE_FRAMES:
                raise ValueError(f"feature {feature.name!r} claims the node's frame {kind!r}")
            if kind in table:
                raise ValueError(
                    f"frame {kind!r} is claimed by both {owner[kind]!r} and {feature.name!r}"
                )
            table[kind] = handler
            owner[kind] = feature.name
    return table


def features_named(features: Sequence[Feature]) -> dict[str, Feature]:
    """Features by name; two features of one name are an error."""
    named: dict[str, Feature] = {}
    for feature in features:
        if feature.name in named:
            raise ValueError(f"two features are named {feature.name!r}")
        named[feature.name] = feature
    return named


class SliceFeature(Feature):
    """A feature that is only a pure slice (its commands ride the ordinary ``command`` frame)."""

    def __init__(self, slice: Slice) -> None:
        self.name = slice.name
        self.slice = slice


class OncePerTurn:
    """``run(room)`` once on the loop's next turn, however often it was asked in this one.

    For a feature's ``folded`` that re-reads the whole room (the media routing, who may
    publish video): one read of the log folds every entry that arrived (hundreds in a join
    or vote storm), and the room is re-read once for them all instead of once per entry.
    Scheduled after the fold's own replies and sends, so nothing the client sees waits.
    """

    def __init__(self, run: Callable[[str], None]) -> None:
        self._run = run
        self._due: dict[str, asyncio.Handle] = {}

    def ask(self, room: str) -> None:
        if room not in self._due:
            self._due[room] = asyncio.get_running_loop().call_soon(self._now, room)

    def _now(self, room: str) -> None:
        del self._due[room]
        self._run(room)

    def cancel(self) -> None:
        for handle in self._due.values():
            handle.cancel()
        self._due.clear()
