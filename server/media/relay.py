"""The forwarding path of live audio, without decoding: frames, sources, listener outlets.

A :class:`Frame` is one Opus packet of one microphone. A :class:`Source` (the floor or a
channel, on one node) forwards accepted frames to its :class:`Outlet` s — one per listening
track — and to recorder taps. An Outlet rewrites RTP timestamps so that a listener's track
runs on one steady clock whatever microphone or source feeds it. :class:`LevelMeter` gives
each microphone's level once per publisher (never per listener).

The floor has *lanes*: up to :data:`~server.audio.FLOOR_MICS` microphones forwarded at once,
each on its own listening track (:class:`FloorLanes` picks them by level). A listener that
asked for ``k`` tracks per source has outlets for lanes ``0…k-1`` of a k-lane floor, so a
one-track listener still hears one voice at a time, handed over on silence, as before.
"""

from __future__ import annotations

import array
import math
from collections.abc import Callable
from operator import mul
from typing import Any, Protocol

import av
from aiortc.rtp import RtpPacket

from ..audio import FLOOR, FLOOR_MICS
from ..protocol import pack, unpack

SAMPLES = 960
"""One 20 ms Opus frame at 48 kHz, the RTP clock step between frames."""
SPEAKING = 50
"""RFC 6464 level (−dBov) at or under which a floor microphone counts as speaking."""
FLOOR_HOLD = 0.4
"""A floor microphone keeps its lane until it has been quiet this long while another speaks."""
FLOOR_GONE = 0.1
"""…or until it has sent nothing for this long."""


class Frame:
    """One Opus packet from one microphone, as it travels between publisher and outlets."""

    __slots__ = ("pub", "pid", "seq", "ts", "payload", "level")

    def __init__(
        self, pub: str, pid: str, seq: int, ts: int, payload: bytes, level: int | None
    ) -> None:
        self.pub, self.pid, self.seq, self.ts = pub, pid, seq, ts
        self.payload, self.level = payload, level

    def to_bus(self) -> bytes:
        return pack([self.seq, self.ts, self.payload, self.pub, self.pid, self.level])

    @classmethod
    def from_bus(cls, data: bytes) -> Frame:
        seq, ts, payload, pub, pid, level = unpack(data)[:6]
        if not (
            isinstance(seq, int)
            and isinstance(ts, int)
            and isinstance(payload, bytes)
            and isinstance(pub, str)
            and isinstance(pid, str)
        ):
            raise ValueError("malformed audio frame")
        return cls(
            pub, pid, seq, ts & 0xFFFFFFFF, payload, level if isinstance(level, int) else None
        )


class Sink(Protocol):
    """Where an outlet's packets go: passthrough.DirectSender (tests: EncodedTrack)."""

    def push(self, payload: bytes, timestamp: int, marker: bool = False) -> bool: ...


class Outlet:
    """One listening track: the packets of whatever source it is attached to, on one clock.

    RTP timestamps continue across a change of microphone or source (handover, channel
    switch): the first packet of a new microphone follows the last one sent by the time
    that passed, so the browser's jitter buffer sees one steady stream.
    """

    def __init__(self, pid: str, sink: Sink, lane: int = 0, lanes: int = 1) -> None:
        if not 0 <= lane < lanes <= FLOOR_MICS:
            raise ValueError(f"lane {lane} of {lanes} (at most {FLOOR_MICS} lanes)")
        self.pid = pid
        self.sink = sink
        self.lane = lane
        """Which of the floor's lanes this track carries (a channel: lane 0 only)…"""
        self.lanes = lanes
        """…of a floor of this many lanes (the listener's tracks per source)."""
        self.source: Source | None = None
        self._pub: str | None = None
        self._last_in = 0
        self._last_out = 0
        self._last_at = 0.0
        listen = getattr(sink, "listen", None)
        self.opus: Callable[[str, str, int, bytes, float], int] | None = (
            None if listen is None else listen(pid)
        )
        """The sink's C writer doing this outlet's work (passthrough.DirectSender.listen)."""

    def feed(self, frame: Frame, now: float) -> bool:
        opus = self.opus
        if opus is not None:
            r = opus(frame.pub, frame.pid, frame.ts, frame.payload, now)
            return r == 1 or (r > 1 and self.after(r, frame, now))
        if frame.pid == self.pid:
            return False  # nobody hears their own microphone
        if frame.pub == self._pub:
            step = (frame.ts - self._last_in) & 0xFFFFFFFF
            if step == 0 or step >= 1 << 31:
                return False  # late or repeated: the stream has moved on
        else:
            elapsed = round((now - self._last_at) * 48_000 / SAMPLES) if self._pub else 1
            step = SAMPLES * max(1, elapsed)
            self._pub = frame.pub
        self._last_in = frame.ts
        self._last_out += step
        self._last_at = now
        # The marker bit starts a talkspurt (RFC 3551 §4.1): a new voice or after a pause.
        return self.sink.push(frame.payload, self._last_out, step > SAMPLES)

    def after(self, result: int, frame: Frame, now: float) -> bool:
        """``opus`` returned 2 (sent; the sender's report is due) or 3 (not bound: nothing
        changed). Bind, and send again; if the sink left C for Python (a TURN pair), the
        re-timing carries on here."""
        sink: Any = self.sink
        if result == 2:
            sink.report()
            return True
        w = sink._w
        opus = sink.opus if sink.ready() else None  # None: not bound, or no longer C
        if opus is not None:
            result = opus(frame.pub, frame.pid, frame.ts, frame.payload, now)
            if result == 2:
                sink.report()
            elif result == 3:
                w.dropped += 1
            return result in (1, 2)
        if sink.opus is None:  # now on the Python writer
            self.opus = None
            self._pub, self._last_in, self._last_at = w.pub, w.last_in, w.last_at
            self._last_out = w.last_out
            return self.feed(frame, now)
        w.dropped += 1
        return False


class FloorLanes:
    """Which floor microphones are forwarded now: at most ``lanes`` at once, by level.

    A microphone keeps its lane while it sends; a new one takes a free lane (never used, or
    its microphone sent nothing for :data:`FLOOR_GONE`), or — if it is speaking (RFC 6464
    level at or under :data:`SPEAKING`) — the lane of the microphone quiet the longest, once
    that one has been quiet for :data:`FLOOR_HOLD` (one that has not spoken since it took
    its lane, as a microphone in DTX silence, has been quiet for ever). Lanes never move
    between holders, so a voice stays on one listening track. With one lane this is the
    floor of one voice.
    """

    def __init__(self, lanes: int) -> None:
        self.held: list[list[Any] | None] = [None] * lanes
        """Per lane ``[pub, last packet, last loud packet]`` (monotonic seconds) or ``None``."""

    def lane(self, frame: Frame, now: float) -> int | None:
        """The lane of ``frame`` (``None``: not forwarded), updating the holders."""
        loud = frame.level is None or frame.level <= SPEAKING
        held = self.held
        for i, h in enumerate(held):
            if h is not None and h[0] == frame.pub:
                h[1] = now
                if loud:
                    h[2] = now
                return i
        free = next((i for i, h in enumerate(held) if h is None or now - h[1] >= FLOOR_GONE), None)
        if free is None:
            if not loud:
                return None
            free = min(range(len(held)), key=lambda i: held[i][2])  # type: ignore[index]
            if now - held[free][2] <= FLOOR_HOLD:  # type: ignore[index]
                return None
        # A lane taken in silence (a microphone's DTX comfort noise: one packet per 400 ms)
        # counts as quiet since ever, so a voice that starts is never held off by it.
        held[free] = [frame.pub, now, now if loud else -math.inf]
        return free

    def holders(self) -> list[str | None]:
        return [h[0] if h is not None else None for h in self.held]


class Source:
    """The floor or one channel on this node: fans accepted frames out to its outlets.

    A channel has one voice (its live interpreter): only lane-0 outlets carry it. The floor
    runs a :class:`FloorLanes` per lane count (1 to ``FLOOR_MICS``: a few comparisons per
    frame, not per listener) and feeds each outlet the frames of its own lane.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.groups: dict[tuple[int, int], set[Outlet]] = {}
        """``(lanes, lane)`` → the outlets of that lane of a floor of that many lanes: a frame
        goes to the groups of its lanes only, so idle lanes cost nothing per frame."""
        self.taps: list[Callable[[Frame, float], None]] = []
        """Every frame of a channel; the floor's one-lane choice (one voice at a time)."""
        self.lane_taps: list[tuple[int, Callable[[Frame, float], None]]] = []
        """``(lane, tap)``: the frames of one lane of the full floor (``FLOOR_MICS`` lanes)."""
        self.floor = [FloorLanes(k) for k in range(1, FLOOR_MICS + 1)] if name == FLOOR else []

    @property
    def outlets(self) -> set[Outlet]:
        """Every outlet attached (a copy: attach with :meth:`add`)."""
        return set().union(*self.groups.values())

    def add(self, outlet: Outlet) -> None:
        self.groups.setdefault((outlet.lanes, outlet.lane), set()).add(outlet)

    def discard(self, outlet: Outlet) -> None:
        key = (outlet.lanes, outlet.lane)
        group = self.groups.get(key)
        if group is not None:
            group.discard(outlet)
            if not group:
                del self.groups[key]

    def push(self, frame: Frame, now: float) -> int:
        if self.floor:
            # lane[k]: the lane of this frame on a floor of k lanes (None: not forwarded).
            lane = [None, *(f.lane(frame, now) for f in self.floor)]
        else:
            lane = [None, *[0] * FLOOR_MICS]
        sent = 0
        pub, pid, ts, payload = frame.pub, frame.pid, frame.ts, frame.payload
        for (lanes, at), group in self.groups.items():
            if lane[lanes] == at:
                for outlet in group:
                    # Outlet.feed, inlined for the C writers: no Python per listener but this.
                    opus = outlet.opus
                    if opus is None:
                        sent += outlet.feed(frame, now)
                        continue
                    r = opus(pub, pid, ts, payload, now)
                    if r == 1:
                        sent += 1
                    elif r:
                        sent += outlet.after(r, frame, now)
        if lane[1] == 0:
            for tap in self.taps:
                tap(frame, now)
        for at, tap in self.lane_taps:
            if lane[FLOOR_MICS] == at:
                tap(frame, now)
        return sent

    @property
    def idle(self) -> bool:
        return not self.groups and not self.taps and not self.lane_taps


class LevelMeter:
    """One microphone's level: from the RFC 6464 header extension, or one decode per publisher."""

    def __init__(self) -> None:
        self._decoder: Any = None
        self.peak = 127

    def measure(self, packet: RtpPacket) -> int | None:
        ext = packet.extensions.audio_level
        level: int | None
        if ext is not None:
            level = int(ext[1])
        else:
            level = self._decode(packet.payload)
        if level is not None:
            self.peak = min(self.peak, level)
        return level

    def _decode(self, payload: bytes) -> int | None:
        if self._decoder is None:
            self._decoder = av.CodecContext.create("libopus", "r")
            self._decoder.format = "s16"
            self._decoder.layout = "stereo"
            self._decoder.sample_rate = 48_000
        try:
            frames = self._decoder.decode(av.Packet(payload))
        except av.FFmpegError:
            return None
        total, count = 0, 0
        for f in frames:
            # Every 8th sample of the interleaved stereo s16: plenty for a level, 8x cheaper.
            samples = array.array("h", bytes(f.planes[0]))[::8]
            total += sum(map(mul, samples, samples))
            count += len(samples)
        if not count:
            return None
        rms = math.sqrt(total / count) / 32767
        return 127 if rms <= 0 else min(127, max(0, round(-20 * math.log10(rms))))
