"""Recording the stage, as a feature: what the stage shows with the floor's sound, and each
sign-language channel, into WebM (VP8) or Matroska (H.264) files by remuxing
(:mod:`server.media.webm`).

It follows the same room state as the audio recording (``state["audio"]["recording"]``:
the node that writes and the id), so one ``recording.start`` records sound and picture
together, into the same directory: ``stage.webm`` beside ``floor.ogg`` and the channels'
files, and ``sign-<code>.webm`` for each sign channel (video sources ``sign:<code>``). An
H.264 picture goes to ``stage.mkv`` (``sign-<code>.mkv``) instead: one track holds one codec,
so while the stage shows an H.264 camera the WebM file has sound and no new picture, and the
other way round; both start at the same moment, as the Ogg files do.

What the stage file shows (until the stage slice's layout and pins say more): a shared
screen while one is published; else the camera of the person the floor forwards as its one
voice (the active speaker, by level: the voice in ``floor.ogg``); else the camera shown
last, while it still publishes; else any camera. It takes each source's best flowing
quality. A change waits for a keyframe of the new picture, which the recorder asks of its
publisher (merged with the viewers' requests, ``forward.KeyframeAsk``). Its sound is the
floor one voice at a time, as ``floor.ogg``: several voices at once are in
``floor-lane1..3.ogg``.

An H.264 frame is the packets of one RTP timestamp (RFC 6184 §5.1: an access unit shares
it), their NAL units written out as Annex B (:func:`server.media.h264.annex_b`); the frame a
file or a switch may start at is one whose first packet carries the SPS (Chromium sends SPS
and PPS in a STAP-A ahead of each IDR picture), so a new picture never plays on another
stream's parameter sets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..audio import FLOOR
from ..node.feature import Feature
from ..types import Event
from . import h264
from .forward import FLOWING, QUALITIES, VideoPacket
from .relay import Frame
from .room import MediaNode, MediaRoom
from .video import VideoNode, VideoRoom
from .webm import WebmFile

if TYPE_CHECKING:
    from ..node.feature import Host
    from ..node.hub import RoomHub

log = logging.getLogger(__name__)

REFRESH = 0.5
"""Seconds between looks at which sources publish and what the stage shows."""
ASK_EVERY = 0.5
"""A keyframe the recorder waits for is asked again at most this often (s)."""
SIGN = "sign:"
EXT = {"vp8": "webm", "h264": "mkv"}
"""The file of each picture codec: WebM holds VP8, Matroska H.264."""


class StageRecorder:
    """One recording's video files of one room: taps on the video sources and the floor."""

    def __init__(self, directory: Path, t0: float, video: VideoRoom, media: MediaRoom) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir, self.t0 = directory, t0
        self.video, self.media = video, media
        self.stages = {
            codec: WebmFile(directory / f"stage.{ext}", t0, audio=True, codec=codec)
            for codec, ext in EXT.items()
        }
        """The stage's file per picture codec (one made only once it has a picture)."""
        self.signs: dict[tuple[str, str], WebmFile] = {}
        """(sign source, codec) → its file."""
        self.codecs: dict[str, str] = {}
        """source → the codec of its last packet."""
        self.taps: dict[str, Callable[[VideoPacket, float], None]] = {}
        self.seen: dict[str, dict[str, float]] = {}
        """source → quality → when its last packet came."""
        self.asked: dict[tuple[str, str], float] = {}
        self.speaker: str | None = None
        self.shown: str | None = None
        media.tap(FLOOR, self._on_floor)

    def _on_floor(self, frame: Frame, now: float) -> None:
        self.speaker = frame.pid
        for out in self.stages.values():
            out.audio(frame.payload, now)

    def _file(self, name: str, codec: str) -> WebmFile:
        if not name.startswith(SIGN):
            return self.stages[codec]
        out = self.signs.get((name, codec))
        if out is None:
            path = self.dir / f"sign-{name[len(SIGN) :]}.{EXT[codec]}"
            out = self.signs[(name, codec)] = WebmFile(path, self.t0, audio=False, codec=codec)
            out.show(self._sign_key(name, codec, time.monotonic()))
        return out

    def _tap(self, name: str) -> Callable[[VideoPacket, float], None]:
        seen = self.seen.setdefault(name, {})
        last_ts: dict[str, int] = {}
        """quality → the RTP timestamp of its last H.264 packet (a new one starts a frame)."""

        def on_packet(p: VideoPacket, now: float) -> None:
            seen[p.q] = now
            self.codecs[name] = p.codec
            out = self._file(name, p.codec)
            if p.desc is not None:
                start, key, data = p.desc.start, p.key, p.payload[p.desc.header :]
            else:
                start, last_ts[p.q] = p.ts != last_ts.get(p.q), p.ts
                if (name, p.q) not in (out.key, out.target):
                    return  # a layer the file does not carry: not worth rewriting
                try:
                    key = start and h264.sps_in(p.payload) is not None
                    data = h264.annex_b(p.payload)
                except ValueError:
                    return  # malformed: a gap in seq, so the file waits for a keyframe
            if out.video((name, p.q), p.rtp, start, key, p.marker, data, now):
                last = self.asked.get((name, p.q), -ASK_EVERY)
                if now - last >= ASK_EVERY:
                    self.asked[(name, p.q)] = now
                    self.video.ask_keyframe(name, p.q)

        return on_packet

    def best(self, name: str, now: float) -> str | None:
        """The best quality of ``name`` that flows now."""
        seen = self.seen.get(name, {})
        flowing = [q for q in QUALITIES if now - seen.get(q, -FLOWING) < FLOWING]
        return flowing[-1] if flowing else None

    def refresh(self, now: float) -> None:
        """Tap the sources that publish now, and choose what each file shows."""
        known = self.video.known()
        for name in known:
            if name not in self.taps:
                self.taps[name] = self._tap(name)
                self.video.tap(name, self.taps[name])
        for name in [n for n in self.taps if n not in known]:
            self.video.untap(name, self.taps.pop(name))
        for (name, sign_codec), out in self.signs.items():
            out.show(self._sign_key(name, sign_codec, now))
        pictures = [n for n in self.taps if not n.startswith(SIGN) and self.best(n, now)]
        screens = [n for n in pictures if n.endswith(":screen")]
        speaker = f"{self.speaker}:camera"
        if screens:
            shown: str | None = screens[0]
        elif speaker in pictures:
            shown = speaker
        elif self.shown in pictures:
            shown = self.shown
        else:
            shown = pictures[0] if pictures else None
        self.shown = shown
        q = self.best(shown, now) if shown else None
        codec = self.codecs.get(shown) if shown else None
        for kind, out in self.stages.items():  # the other codec's file: sound, no picture
            out.show((shown, q) if shown and q and kind == codec else None)

    def _sign_key(self, name: str, codec: str, now: float) -> tuple[str, str] | None:
        q = self.best(name, now)
        return (name, q) if q and self.codecs.get(name) == codec else None

    def stop(self) -> None:
        self.media.untap(FLOOR, self._on_floor)
        for name, tap in self.taps.items():
            self.video.untap(name, tap)
        self.taps = {}
        for out in (*self.stages.values(), *self.signs.values()):
            out.close()


class StageRecording(Feature):
    """Starts and stops this node's stage recorders as ``state.audio.recording`` says."""

    name = "stage_recording"

    def __init__(self, media: MediaNode, video: VideoNode) -> None:
        self.media = media
        self.video = video
        self.node_name = ""
        self.root = Path("recordings")
        self.recorders: dict[str, tuple[str, StageRecorder]] = {}
        """room → (recording id, its recorder)."""
        self.stale: set[str] = set()

    def folded(self, hub: RoomHub, entry_id: str, events: list[Event]) -> None:
        rec = hub.state["audio"]["recording"]
        ours = rec is not None and rec["node"] == self.node_name and rec["id"] not in self.stale
        held = self.recorders.get(hub.room)
        if held is not None and not (ours and rec is not None and rec["id"] == held[0]):
            self._stop(hub.room)
            held = None
        if rec is None or not ours or held is not None:
            return
        video, media = self.video.rooms.get(hub.room), self.media.rooms.get(hub.room)
        if video is None or media is None:
            return
        directory = self.root / hub.room / rec["id"]
        recorder = StageRecorder(directory, time.monotonic(), video, media)
        self.recorders[hub.room] = (rec["id"], recorder)
        recorder.refresh(time.monotonic())

    def _stop(self, room: str) -> None:
        _, recorder = self.recorders.pop(room)
        recorder.stop()

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(REFRESH)
            for _, recorder in list(self.recorders.values()):
                try:
                    recorder.refresh(time.monotonic())
                except Exception:  # a bad moment must not end the recording
                    log.exception("stage recording: refresh failed")

    @contextlib.asynccontextmanager
    async def running(self, node: Host) -> AsyncIterator[None]:
        self.node_name, self.root = node.name, Path(node.settings.recordings)
        for hub in node.hubs.values():
            rec = hub.state["audio"]["recording"]
            if rec is not None and rec["node"] == node.name:
                self.stale.add(rec["id"])  # a previous run's: the recording feature stops it
        task = asyncio.get_running_loop().create_task(
            self._refresh(), name=f"stage-recording-{node.name}"
        )
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            for room in list(self.recorders):
                self._stop(room)
