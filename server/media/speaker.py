"""The active speaker: who the stage shows large, from the floor's own audio on this node.

Not a logged event. The floor already forwards the microphones that speak (``relay.Source``,
RFC 6464 levels in every frame, on every node alike); this feature taps the floor of each
room on this node and names the speaker to this node's connections only, in an ephemeral
``{"type": "ephemeral", "kind": "speaker", "pid": …}`` (and in each welcome as
``assembly.speaker``). Why not an event: it changes every few seconds, the fold needs it for
nothing (no rule depends on it), and a log entry per change would make every node fold and
every snapshot carry noise. Why per node and not over the bus: each node derives it from the
same frames, so the tile a viewer sees follows the voice that viewer's node forwards — which
is what an interpreter must see (docs/architecture.md, "The stage").

The :class:`Tracker` holds the hysteresis, fed with ``now`` so that tests drive it: a
speaker keeps the stage until quiet for :data:`HOLD` seconds while another has spoken for
:data:`MIN_TALK` (a cough or a "yes" does not take the stage); the last speaker stays shown
through silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..audio import FLOOR
from ..errors import HemicycleError
from ..node.feature import Feature
from ..types import Event
from .relay import SPEAKING, Frame
from .room import MediaNode

if TYPE_CHECKING:
    from ..node.feature import Host
    from ..node.hub import RoomHub

log = logging.getLogger(__name__)

HOLD = 1.0
"""The current speaker keeps the stage until quiet this long (seconds)…"""
MIN_TALK = 0.5
"""…while another has been speaking at least this long (a talkspurt, gaps under GAP)."""
GAP = 0.3
"""A pause longer than this starts a new talkspurt."""
WATCH = 0.5
"""How often the taps follow the floor's listeners on this node (s)."""


class Tracker:
    """One room's active speaker on this node, from the floor frames it forwards."""

    def __init__(self, changed: Callable[[str | None], None]) -> None:
        self.changed = changed
        self.speaker: str | None = None
        self._loud: dict[str, float] = {}
        """pid → when their microphone was last loud."""
        self._since: dict[str, float] = {}
        """pid → when their current talkspurt began."""

    def feed(self, frame: Frame, now: float) -> None:
        if frame.level is not None and frame.level > SPEAKING:
            return  # quiet: nothing to learn
        pid = frame.pid
        if now - self._loud.get(pid, -1e9) > GAP:
            self._since[pid] = now
        self._loud[pid] = now
        current = self.speaker
        if pid == current:
            return
        quiet = current is None or now - self._loud.get(current, -1e9) >= HOLD
        if quiet and now - self._since[pid] >= MIN_TALK:
            self.speaker = pid
            self.changed(pid)


class ActiveSpeaker(Feature):
    """Taps a room's floor on this node while the node has connections in the room (a node
    subscribes only to what its own connections need); tells them who speaks."""

    name = "speaker"

    def __init__(self, audio: MediaNode) -> None:
        self.audio = audio
        self.trackers: dict[str, Tracker] = {}
        self.tapped: set[str] = set()

    def welcome(self, hub: RoomHub) -> Mapping[str, Any]:
        tracker = self.trackers.get(hub.room)
        return {"speaker": tracker.speaker if tracker else None}

    def _sync(self, hub: RoomHub) -> None:
        """Tap the floor while something else here already takes it (a listener, a recording):
        the tap never makes this node subscribe to the floor for itself."""
        room = hub.room
        tracker = self.trackers.get(room)
        if tracker is None:
            return
        try:
            media = self.audio.room(room)
        except HemicycleError:
            return
        source = media.sources.get(FLOOR)
        others = source is not None and (
            bool(source.outlets) or any(t != tracker.feed for t in source.taps)
        )
        if others and room not in self.tapped:
            media.tap(FLOOR, tracker.feed)
            self.tapped.add(room)
        elif not others and room in self.tapped:
            self.tapped.discard(room)
            media.untap(FLOOR, tracker.feed)

    def folded(self, hub: RoomHub, entry_id: str, events: list[Event]) -> None:
        self._sync(hub)

    async def _watch(self, node: Host) -> None:
        """Listeners come and go without a fold (their offers): look twice a second."""
        while True:
            await asyncio.sleep(WATCH)
            for hub in node.hubs.values():
                self._sync(hub)

    @contextlib.asynccontextmanager
    async def in_room(self, node: Host, hub: RoomHub) -> AsyncIterator[None]:
        tracker = self.trackers[hub.room] = Tracker(_teller(hub))
        self._sync(hub)
        try:
            yield
        finally:
            if self.trackers.get(hub.room) is tracker:
                del self.trackers[hub.room]
            if hub.room in self.tapped:
                self.tapped.discard(hub.room)
                with contextlib.suppress(HemicycleError):
                    self.audio.room(hub.room).untap(FLOOR, tracker.feed)

    @contextlib.asynccontextmanager
    async def running(self, node: Host) -> AsyncIterator[None]:
        watch = asyncio.get_running_loop().create_task(self._watch(node))
        try:
            yield
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            for room in list(self.tapped):
                with contextlib.suppress(HemicycleError):
                    self.audio.room(room).untap(FLOOR, self.trackers[room].feed)
            self.tapped.clear()
            self.trackers.clear()


def _teller(hub: RoomHub) -> Callable[[str | None], None]:
    def tell(pid: str | None) -> None:
        # Not from inside the packet path (a UDP callback deep in aiortc): the sends to the
        # room's sockets run as a callback of their own, as the levels' task does.
        asyncio.get_running_loop().call_soon(
            hub.tell_local, {"type": "ephemeral", "kind": "speaker", "pid": pid}
        )

    return tell
