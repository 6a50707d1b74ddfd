"""What kind of track a media path carries: its codec, clock and limits, in one value.

The ingest, bus and routing path (``room.py``, ``buslink.py``, ``signalling.py``) takes a
:class:`Kind` instead of audio constants, so another kind (video, for the stage) is one
more instance, not a copy of the path: :data:`AUDIO`, and :data:`VIDEO` for the stage
(server/media/video.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """One kind of media track, as the relay sees it (it never decodes it)."""

    name: str
    """The SDP media type (``m=audio``) and the bus channel's middle part."""
    codec: str
    """The one codec carried, as SDP names it (``opus``); packets are forwarded as they are."""
    clock_rate: int
    """The codec's RTP clock (Hz)."""
    max_payload: int
    """A packet's payload larger than this is dropped on ingest."""
    packet_rate: float
    """Packets per second a publisher may send; past it (with ``packet_burst``): dropped."""
    packet_burst: float
    levels: bool
    """Whether each packet carries a level (RFC 6464 for audio): VU meters, the floor's
    choice of speaker."""

    @property
    def mime(self) -> str:
        return f"{self.name}/{self.codec}"

    def bus_channel(self, room: str, source: str) -> str:
        """The bus channel of one source's frames: ``hc:{room}:<kind>:<source>``."""
        return f"hc:{{{room}}}:{self.name}:{source}"


AUDIO = Kind(
    name="audio",
    codec="opus",
    clock_rate=48_000,
    max_payload=1400,
    packet_rate=120.0,  # Opus at 10 ms is 100/s
    packet_burst=60.0,
    levels=True,
)


VIDEO = Kind(
    name="video",
    codec="vp8",  # and H.264 where the browser prefers it (vhook.CODECS)
    clock_rate=90_000,
    max_payload=1400,
    # A 720p+360p+180p simulcast camera sends ~250 packets/s, a keyframe of all three
    # layers ~150 packets at once.
    packet_rate=600.0,
    packet_burst=400.0,
    levels=False,
)
