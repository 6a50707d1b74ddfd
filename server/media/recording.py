"""Recording the floor and each channel to Ogg/Opus files, by remuxing (no re-encode).

The node named in ``state["audio"]["recording"]`` writes one file per source into
``<recordings>/<room>/<id>/<source>.ogg`` (RFC 7845: an ``OpusHead`` page, an ``OpusTags``
page, then the Opus packets as they arrived). Every file of one recording starts at the
same moment and runs on the wall clock: where a source was silent (nobody on air, a
cough, a pause between speakers) the writer inserts 20 ms Opus silence frames, so the
files stay aligned with each other and with the session's time.
"""

from __future__ import annotations

import logging
import re
import struct
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import HemicycleError, WrongRoom
from ..node.feature import Feature
from ..node.http import moderator, node_of

log = logging.getLogger(__name__)

RATE = 48_000
SILENCE = b"\xf8\xff\xfe"
"""A 20 ms CELT fullband Opus frame that decodes to silence (as WebRTC stacks send)."""
PRE_SKIP = 312
PAGE_PACKETS = 50
"""Packets per Ogg page (about one second): a crash loses at most that much."""
JITTER = 3 * 960
"""Arrival jitter tolerated before a gap is filled with silence."""
NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}(\.ogg)?$")


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else r << 1
        table.append(r & 0xFFFFFFFF)
    return table


CRC = _crc_table()


def ogg_crc(data: bytes) -> int:
    """The Ogg page checksum (CRC-32, polynomial 0x04C11DB7, not reflected, RFC 3533)."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ CRC[((crc >> 24) & 0xFF) ^ byte]
    return crc


def opus_samples(packet: bytes) -> int:
    """Samples (at 48 kHz) in one Opus packet, from its TOC byte (RFC 6716 §3.1)."""
    if not packet:
        return 0
    toc = packet[0]
    config = toc >> 3
    if config < 12:
        size = (480, 960, 1920, 2880)[config & 3]
    elif config < 16:
        size = (480, 960)[config & 1]
    else:
        size = (120, 240, 480, 960)[config & 3]
    code = toc & 3
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    else:
        frames = packet[1] & 0x3F if len(packet) > 1 else 0
    return size * frames


class OggOpusWriter:
    """Writes Opus packets into one Ogg stream. ``write`` per packet, then ``close``."""

    def __init__(self, out: IO[bytes], serial: int, channels: int = 2) -> None:
        self.out = out
        self.serial = serial
        self.page = 0
        self.granule = 0
        self.pending: list[bytes] = []
        head = b"OpusHead" + struct.pack("<BBHIhB", 1, channels, PRE_SKIP, RATE, 0, 0)
        vendor = b"hemicycle"
        tags = b"OpusTags" + struct.pack("<I", len(vendor)) + vendor + struct.pack("<I", 0)
        self._page([head], granule=0, flags=0x02)
        self._page([tags], granule=0, flags=0)

    def write(self, packet: bytes) -> None:
        self.granule += opus_samples(packet)
        self.pending.append(packet)
        if len(self.pending) >= PAGE_PACKETS:
            self.flush()

    def flush(self, last: bool = False) -> None:
        if self.pending or last:
            self._page(self.pending, granule=self.granule + PRE_SKIP, flags=0x04 if last else 0)
            self.pending = []
        self.out.flush()

    def close(self) -> None:
        self.flush(last=True)
        self.out.close()

    def _page(self, packets: list[bytes], granule: int, flags: int) -> None:
        lacing = bytearray()
        for p in packets:
            lacing += b"\xff" * (len(p) // 255) + bytes([len(p) % 255])
        assert len(lacing) <= 255, "too many packets for one Ogg page"
        header = struct.pack(
            "<4sBBqIIIB", b"OggS", 0, flags, granule, self.serial, self.page, 0, len(lacing)
        ) + bytes(lacing)
        body = b"".join(packets)
        crc = ogg_crc(header + body)
        self.out.write(header[:22] + struct.pack("<I", crc) + header[26:] + body)
        self.page += 1


class Track:
    """One source's file: packets on the wall clock, gaps filled with silence."""

    def __init__(self, path: Path, serial: int, t0: float) -> None:
        self.writer = OggOpusWriter(path.open("wb"), serial)
        self.t0 = t0
        self.samples = 0
        self.packets = 0

    def _fill(self, until: int) -> None:
        while self.samples + 960 <= until:
            self.writer.write(SILENCE)
            self.samples += 960

    def add(self, payload: bytes, now: float) -> None:
        due = round((now - self.t0) * RATE)
        if due - self.samples > JITTER:
            self._fill(due - 960)
        self.writer.write(payload)
        self.samples += opus_samples(payload)
        self.packets += 1

    def close(self, now: float) -> None:
        self._fill(round((now - self.t0) * RATE))
        self.writer.close()


class Recorder:
    """One recording of one room: a :class:`Track` per source, fed by the media Sources."""

    def __init__(self, root: str | Path, room: str, rid: str) -> None:
        self.id = rid
        self.dir = Path(root) / room / rid
        self.dir.mkdir(parents=True, exist_ok=True)
        self.t0 = time.monotonic()
        self.tracks: dict[str, Track] = {}
        self.taps: dict[str, Callable[[Any, float], None]] = {}
        log.info("recording %s of room %s into %s", rid, room, self.dir)

    def tap(self, source: str) -> Callable[[Any, float], None]:
        """The function a media Source calls with each frame it forwards."""
        track = Track(self.dir / f"{source}.ogg", len(self.tracks) + 1, self.t0)
        self.tracks[source] = track

        def on_frame(frame: Any, now: float) -> None:
            track.add(frame.payload, now)

        self.taps[source] = on_frame
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
                if f.suffix == ".ogg"
            ]
            out.append({"id": d.name, "files": files})
    return out


def recording_file(root: str | Path, room: str, rid: str, name: str) -> Path | None:
    """The path of one file, or ``None`` if it does not exist or a name is not plain."""
    if not (NAME.match(rid) and NAME.match(name) and name.endswith(".ogg")):
        return None
    path = Path(root) / room / rid / name
    return path if path.is_file() else None


# --- HTTP: moderators list and download (``Authorization: Bearer <moderator token>``) ------


def _room(request: Request, room: str) -> str:
    if room not in node_of(request).hubs:
        raise WrongRoom(f"there is no room {room!r}", code="unknown_room")
    return room


async def list_route(request: Request) -> Response:
    """``GET /api/recordings?room=`` (default: the token's room)."""
    claims = moderator(request, "list recordings")
    room = _room(request, request.query_params.get("room", claims["room"]))
    node = node_of(request)
    return JSONResponse(
        {
            "room": room,
            "recording": node.hubs[room].state["audio"]["recording"],
            "recordings": list_recordings(node.settings.recordings, room),
        }
    )


async def file_route(request: Request) -> Response:
    """``GET /api/recordings/<room>/<id>/<source>.ogg``."""
    moderator(request, "download recordings")
    p = request.path_params
    room = _room(request, p["room"])
    path = recording_file(node_of(request).settings.recordings, room, p["rec"], p["name"])
    if path is None:
        raise HemicycleError("no such recording file", code="no_such_recording")
    return FileResponse(path, media_type="audio/ogg", filename=f"{room}-{p['rec']}-{p['name']}")


ROUTES = [
    Route("/api/recordings", list_route),
    Route("/api/recordings/{room}/{rec}/{name}", file_route),
]


class Recordings(Feature):
    """The chair's recordings over HTTP (the audio feature writes them)."""

    name = "recordings"

    def routes(self) -> Sequence[BaseRoute]:
        return ROUTES
