"""What audio and video share as features: one media object per room, and its tasks.

:class:`PerRoom` is the feature side of audio (``room.MediaNode``) and video
(``video.VideoNode``): it makes one room object per hub when the node starts (after the
aiortc self-checks), hands it its frames, folds and leaves, and drops them all at the end.
:class:`Tasks` is what a room object starts in the background (an answer to an offer, a
close, an announcement) and cancels when it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from ..errors import Unavailable
from ..node.feature import Feature, OncePerTurn
from ..types import Event
from . import passthrough

if TYPE_CHECKING:
    from ..node.feature import Host
    from ..node.hub import RoomHub, Sink
    from ..node.sessions import Session


class RoomMedia(Protocol):
    """One room's media on this node, entered for as long as the node runs."""

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def handle(self, peer: Session, data: dict[str, Any]) -> None: ...

    def folded(self) -> None: ...

    async def leave(self, conn: str) -> None: ...


R = TypeVar("R", bound=RoomMedia)


class PerRoom(Feature, Generic[R]):
    """A media feature: one ``R`` per room, made by :meth:`make_room` when the node runs."""

    missing = "this node has no media for this room"
    """The ``Unavailable`` message for a room without one."""

    def __init__(self) -> None:
        self.rooms: dict[str, R] = {}
        self._refresh = OncePerTurn(self._refreshed)

    def make_room(self, hub: RoomHub) -> R:
        raise NotImplementedError

    async def enter(self, stack: contextlib.AsyncExitStack, node: Host) -> None:
        """What the feature starts before its rooms (audio: its media workers)."""

    def leave_all(self) -> None:
        """Forget what :meth:`enter` started (the stack closes it)."""

    def self_check(self) -> None:
        """Raise ``PassthroughBroken`` unless the aiortc internals it hooks are there."""
        passthrough.self_check()

    def room(self, room: str) -> R:
        """The media of ``room`` on this node (for taps); ``Unavailable`` when not running."""
        media = self.rooms.get(room)
        if media is None:
            raise Unavailable(self.missing)
        return media

    async def handle(self, session: Session, data: dict[str, Any]) -> None:
        await self.room(session.hub.room).handle(session, data)

    def folded(self, hub: RoomHub, entry_id: str, events: list[Event]) -> None:
        self._refresh.ask(hub.room)  # once per read of the log, not once per entry

    def _refreshed(self, name: str) -> None:
        room = self.rooms.get(name)
        if room is not None:
            room.folded()

    async def left(self, hub: RoomHub, sink: Sink) -> None:
        room = self.rooms.get(hub.room)
        if room is not None:
            await room.leave(sink.person["conn"])

    @contextlib.asynccontextmanager
    async def running(self, node: Host) -> AsyncIterator[None]:
        self.self_check()
        async with contextlib.AsyncExitStack() as stack:
            await self.enter(stack, node)
            try:
                yield
            finally:
                self._refresh.cancel()
                self.rooms = {}
                self.leave_all()

    @contextlib.asynccontextmanager
    async def in_room(self, node: Host, hub: RoomHub) -> AsyncIterator[None]:
        media = self.make_room(hub)
        async with media:
            self.rooms[hub.room] = media
            try:
                yield
            finally:
                if self.rooms.get(hub.room) is media:
                    del self.rooms[hub.room]


class Tasks:
    """Background tasks of one room's media: :meth:`spawn` them, :meth:`cancel` at the end."""

    def __init__(self, room: str) -> None:
        self.room = room
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"{name}-{self.room}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel(self) -> None:
        """Cancel every task still running and wait for each to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
