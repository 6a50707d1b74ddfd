"""Recording a room, as a feature: the floor and each channel to Ogg/Opus files.

The room state says who records (``state["audio"]["recording"]``): a moderator's
``recording.start`` command names the node of their connection and an id from the log time
(server/audio.py), so the fold re-checks the role like any command. After each fold,
:class:`Recording` starts a :class:`Recorder` when the state names this node, taps every
source of the room through the audio feature (:meth:`MediaRoom.tap`; a channel added
mid-recording is tapped when it appears) and stops when the state no longer names it.

The node writes one file per source into ``<recordings>/<room>/<id>/<source>.ogg``
(:mod:`server.media.oggopus`); every file of one recording starts at the same moment, so
they stay aligned. The floor, with several microphones open, is written twice, as its
listeners hear it: ``floor.ogg`` is one voice at a time (the one speaking, handed over after
0.4 s of quiet, as a one-track listener hears it), and ``floor-lane1.ogg`` …
``floor-lane3.ogg`` are the lanes of the full floor (a file appears once its lane carries a
voice): mixed together they are what a listener's browser plays, overlaps included. Nothing
is decoded to write them. A node that shuts down stops its recording first; a recording whose node
died (its heartbeat expired) is stopped by any other node's orphan check, with a
``SYSTEM`` ``recording.stop`` whose cid ``recording.stop:<id>`` counts once. Moderators list
and download the files over HTTP (``/api/recordings``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .. import audio
from ..errors import HemicycleError, WrongRoom
from ..node.feature import Feature
from ..node.http import moderator, node_of
from ..types import SYSTEM, Actor, Event
from .oggopus import Track
from .room import MediaNode

if TYPE_CHECKING:
    from ..node.feature import Host
    from ..node.hub import RoomHub

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}(\.ogg|\.webm|\.mkv)?$")
TYPES = {".ogg": "audio/ogg", ".webm": "video/webm", ".mkv": "video/matroska"}
"""The files a recording holds: sound (here) and the stage's picture (stagerec.py: WebM for
VP8, Matroska for H.264; ``video/matroska`` is registered by RFC 9559)."""
ORPHAN_CHECK_EVERY = 3.0
"""Seconds between checks that another node's recording still has a live node."""


class Recorder:
    """One recording of one room: a :class:`Track` per source, fed by the media Sources."""

    def __init__(self, root: str | Path, room: str, rid: str) -> None:
        self.id = rid
        self.dir = Path(root) / room / rid
        self.dir.mkdir(parents=True, exist_ok=True)
        self.t0 = time.monotonic()
        self.tracks: dict[str, Track] = {}
        self.taps: dict[str, tuple[str, int | None, Callable[[Any, float], None]]] = {}
        """file name → ``(source, lane, tap)``, as handed to ``MediaRoom.tap``."""
        log.info("recording %s of room %s into %s", rid, room, self.dir)

    def tap(self, source: str, lane: int | None = None) -> Callable[[Any, float], None]:
        """The function a media Source calls with each frame it forwards (of one ``lane``).

        A lane's file is made at its first frame, on the recording's clock (silence before).
        """
        name = source if lane is None else f"{source}-lane{lane + 1}"
        serial = len(self.taps) + 1
        if lane is None:
            self.tracks[name] = Track(self.dir / f"{name}.ogg", serial, self.t0)

        def on_frame(frame: Any, now: float) -> None:
            track = self.tracks.get(name)
            if track is None:
                track = self.tracks[name] = Track(self.dir / f"{name}.ogg", serial, self.t0)
            track.add(frame.payload, now)

        self.taps[name] = (source, lane, on_frame)
        return on_frame

    def stop(self) -> None:
        now = time.monotonic()
        for track in self.tracks.values():
            try:
                track.close(now)
            except OSError as exc:
                log.error("recording %s: cannot finish a file: %s", self.id, exc)


def list_recordings(root: str | Path, room: str) -> list[dict[str, Any]]:
    """The recordings of ``room``, newest first: ``[{id, files: [{name, bytes}]}]``."""
    base = Path(root) / room
    if not base.is_dir():
        return []
    out = []
    for d in sorted(base.iterdir(), reverse=True):
        if d.is_dir() and NAME.match(d.name):
            files = [
                {"name": f.name, "bytes": f.stat().st_size}
                for f in sorted(d.iterdir())
                if f.suffix in TYPES
            ]
            out.append({"id": d.name, "files": files})
    return out


def recording_file(root: str | Path, room: str, rid: str, name: str) -> Path | None:
    """The path of one file, or ``None`` if it does not exist or a name is not plain."""
    if not (NAME.match(rid) and NAME.match(name) and Path(name).suffix in TYPES):
        return None
    path = Path(root) / room / rid / name
    return path if path.is_file() else None


# --- HTTP: moderators list and download (``Authorization: Bearer <moderator token>``) ------


def _room(request: Request, room: str) -> str:
    if room not in node_of(request).served:
        raise WrongRoom(f"there is no room {room!r}", code="unknown_room")
    return room


async def list_route(request: Request) -> Response:
    """``GET /api/recordings?room=`` (default: the token's room)."""
    claims = moderator(request, "list recordings")
    room = request.query_params.get("room", claims["room"])
    moderator(request, "list the recordings", room)
    room = _room(request, room)
    node = node_of(request)
    hub = await node.room(room)
    assert hub is not None  # a room this node serves (``_room``)
    return JSONResponse(
        {
            "room": room,
            "recording": hub.state["audio"]["recording"],
            "recordings": list_recordings(node.settings.recordings, room),
        }
    )


async def file_route(request: Request) -> Response:
    """``GET /api/recordings/<room>/<id>/<source>.ogg``."""
    p = request.path_params
    moderator(request, "download the recordings", p["room"])
    room = _room(request, p["room"])
    path = recording_file(node_of(request).settings.recordings, room, p["rec"], p["name"])
    if path is None:
        raise HemicycleError("no such recording file", code="no_such_recording")
    return FileResponse(
        path, media_type=TYPES[path.suffix], filename=f"{room}-{p['rec']}-{p['name']}"
    )


ROUTES = [
    Route("/api/recordings", list_route),
    Route("/api/recordings/{room}/{rec}/{name}", file_route),
]


class Recording(Feature):
    """Recording: starts and stops this node's recorders from the state; the HTTP routes."""

    name = "recording"

    def __init__(self, media: MediaNode) -> None:
        self.media = media
        self.node_name = ""
        self.root = "recordings"
        self.recorders: dict[str, Recorder] = {}
        """room → the recording this node writes."""
        self.stale: set[str] = set()
        """Ids of recordings this node's previous run left: never written again."""

    def routes(self) -> Sequence[BaseRoute]:
        return ROUTES

    def folded(self, hub: RoomHub, entry_id: str, events: list[Event]) -> None:
        self._follow(hub)

    def _follow(self, hub: RoomHub) -> None:
        """Make this node's recorder of ``hub``'s room match the state."""
        rec = hub.state["audio"]["recording"]
        ours = rec is not None and rec["node"] == self.node_name and rec["id"] not in self.stale
        recorder = self.recorders.get(hub.room)
        if recorder is not None and not (ours and rec is not None and rec["id"] == recorder.id):
            self._stop(hub.room)
            recorder = None
        if rec is None or not ours:
            return
        if recorder is None:
            recorder = self.recorders[hub.room] = Recorder(self.root, hub.room, rec["id"])
        media = self.media.room(hub.room)
        for name in audio.sources(hub.state):  # a moderator may add a channel mid-recording
            if name not in recorder.taps:
                media.tap(name, recorder.tap(name))
        if f"{audio.FLOOR}-lane1" not in recorder.taps:
            for lane in range(audio.FLOOR_MICS):
                media.tap(audio.FLOOR, recorder.tap(audio.FLOOR, lane), lane)

    def _stop(self, room: str) -> None:
        recorder = self.recorders.pop(room)
        media = self.media.rooms.get(room)
        if media is not None:
            for source, lane, tap in recorder.taps.values():
                media.untap(source, tap, lane)
        recorder.stop()

    @contextlib.asynccontextmanager
    async def running(self, node: Host) -> AsyncIterator[None]:
        self.node_name, self.root = node.name, node.settings.recordings
        for hub in node.hubs.values():
            rec = hub.state["audio"]["recording"]
            if rec is not None and rec["node"] == node.name:
                # Left by this node's previous run (it died before stopping it): stop it,
                # rather than write over the files that run wrote.
                self.stale.add(rec["id"])
                log.warning("room %s: stopping recording %s of a previous run", hub.room, rec["id"])
                with contextlib.suppress(HemicycleError):  # the log is away: the orphan check
                    await _stop_command(node, hub, rec["id"])
        orphans = asyncio.get_running_loop().create_task(
            self._check_orphans(node), name=f"recording-orphans-{node.name}"
        )
        try:
            yield
        finally:
            orphans.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await orphans
            for room, recorder in list(self.recorders.items()):
                with contextlib.suppress(HemicycleError):  # the log is away: the orphan check
                    await _stop_command(node, node.hubs[room], recorder.id)
                self._stop(room)

    async def _check_orphans(self, node: Host) -> None:
        while True:
            await asyncio.sleep(ORPHAN_CHECK_EVERY)
            for hub in node.hubs.values():
                await self._orphaned(node, hub)

    async def _orphaned(self, node: Host, hub: RoomHub) -> None:
        """Stop a recording whose node died (no heartbeat, or it is this node's previous run),
        so the room stops saying it is recorded; any node may do it, the
        ``recording.stop:<id>`` cid counts once."""
        rec = hub.state["audio"]["recording"]
        if rec is None:
            return
        stale = rec["id"] in self.stale
        if rec["node"] == node.name and not stale:
            return
        try:
            if not stale and await node.backends.alive({rec["node"]}):
                return
            await _stop_command(node, hub, rec["id"])
            log.warning(
                "room %s: recording %s stopped, its node %s is gone",
                hub.room,
                rec["id"],
                rec["node"],
            )
        except HemicycleError:
            pass
        except Exception as exc:  # the backend is away: try again later
            log.warning("room %s: cannot check the recording node: %s", hub.room, exc)


async def _stop_command(node: Host, hub: RoomHub, rid: str) -> None:
    await hub.submit(Actor(node.name, SYSTEM), "recording.stop", {}, f"recording.stop:{rid}")
