"""The peers of stage video: its ``[video]`` config, publishers, viewers, offer checks.

What ``video.VideoRoom`` holds per connection (:class:`VPeers`: one viewing connection, a
publisher per source) and the check every offer passes before aiortc sees it
(:func:`check_offer`). No routing here: the room decides where packets go.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection
from aiortc import sdp as aiortc_sdp

from ..errors import BadArgs, ConfigError
from ..node.throttle import TokenBucket
from . import vhook
from .forward import QUALITIES, Arrivals, VideoOutlet
from .kind import VIDEO
from .setup import check_candidates
from .signalling import OFFER_BURST, OFFER_RATE, Peer


@dataclass(frozen=True)
class VideoConfig:
    """``[video]`` of the assembly file: the room's caps."""

    max_width: int = 1280
    max_height: int = 720
    max_bitrate: int = 2_500_000
    """Bits per second of one publisher, all layers; also the REMB a camera is sent."""
    max_tiles: int = 9
    """Video m-sections in one viewer's offer (the tiles it can show at once)."""
    max_packets: int = int(VIDEO.packet_rate)
    """Packets per second of one publisher, all layers (a burst of 2/3 s more passes)."""

    @classmethod
    def from_extra(cls, extra: Any, source: str = "<config>") -> VideoConfig:
        table = extra.get("video", {}) if hasattr(extra, "get") else {}
        if not isinstance(table, dict):
            raise ConfigError(source, "video", "expected a table")
        values = {}
        for key in ("max_width", "max_height", "max_bitrate", "max_tiles", "max_packets"):
            if key in table:
                value = table[key]
                if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                    raise ConfigError(source, f"video.{key}", "expected a positive integer")
                values[key] = value
        return cls(**values)


class ByteBucket(TokenBucket):
    """A token bucket counted in bytes."""

    def spend(self, size: int) -> bool:
        self._refill()
        if self.tokens < size:
            return False
        self.tokens -= size
        return True


class VideoPublisher:
    """One published source (a camera or a screen): a receive-only peer connection."""

    def __init__(
        self,
        peer: Peer,
        what: str,
        pc: RTCPeerConnection,
        config: VideoConfig,
        right: str | None = None,
    ) -> None:
        self.peer = peer
        self.pid: str = peer.person["pid"]
        self.what = what
        self.right = right or what
        """The right in ``stage.video_publishers`` it publishes under: ``camera``, ``screen``,
        or ``sign:<lang>`` (a sign interpreter's camera is their channel's source)."""
        self.source = self.right if self.right.startswith("sign:") else f"{self.pid}:{what}"
        self.pub = f"{peer.person['conn']}.{what}"
        self.pc = pc
        self.receiver: Any = None
        self.pts: dict[int, str] = {}
        """Payload type → codec name, of the negotiated forwarded codecs."""
        self.rids: list[str] = []
        self.layer_of: dict[int, str] = {}
        """SSRC → quality, latched at first sight (Chromium stops sending the RID early)."""
        self.seq: dict[str, int] = {}
        self.arrivals: dict[int, Arrivals] = {}
        """SSRC → the sequence numbers that arrived (a repeat is dropped)."""
        self.packets = TokenBucket(config.max_packets, config.max_packets * 2 / 3)
        self.bytes = ByteBucket(config.max_bitrate / 8 * 1.5, config.max_bitrate / 8)

    def first(self, ssrc: int, seq: int) -> bool:
        """Whether packet ``seq`` of ``ssrc`` arrives for the first time (not a repeat)."""
        arrivals = self.arrivals.get(ssrc)
        if arrivals is None:
            if len(self.arrivals) >= 2 * len(QUALITIES):  # SSRCs of a layer that changed
                self.arrivals.clear()
            arrivals = self.arrivals[ssrc] = Arrivals()
        return arrivals.first(seq)

    def ssrc_of(self, q: str) -> int | None:
        return next((s for s, lq in self.layer_of.items() if lq == q), None)


class Viewer:
    """One person's viewing peer connection: one outlet per tile (m-section)."""

    def __init__(self, peer: Peer, pc: RTCPeerConnection, outlets: list[VideoOutlet]) -> None:
        self.peer = peer
        self.pc = pc
        self.outlets = outlets


class VPeers:
    def __init__(self) -> None:
        self.viewer: Viewer | None = None
        self.publishers: dict[str, VideoPublisher] = {}
        self.lock = asyncio.Lock()
        self.offers = TokenBucket(OFFER_RATE, OFFER_BURST)
        self.closed = False


def check_offer(sdp: str, purpose: str, config: VideoConfig, allow_loopback: bool) -> int:
    """Refuse an offer that is not video in a forwarded codec; return its m-sections."""
    if not sdp.startswith("v=0"):
        raise BadArgs("the offer is not an SDP session description", code="bad_sdp")
    try:
        parsed = aiortc_sdp.SessionDescription.parse(sdp)
    except Exception as exc:
        raise BadArgs(f"the offer cannot be parsed: {exc}", code="bad_sdp") from None
    kinds = [m.kind for m in parsed.media]
    if not kinds or any(k != "video" for k in kinds):
        raise BadArgs("only video is carried here", code="video_only")
    most = 1 if purpose == "publish" else config.max_tiles
    if len(kinds) > most:
        raise BadArgs(
            f"a {purpose} offer has at most {most} video m-section(s)", code="too_many_tracks"
        )
    for m in parsed.media:
        if not any(c.mimeType.lower() in vhook.CODECS for c in m.rtp.codecs):
            raise BadArgs("the offer has neither VP8 nor H.264", code="unsupported_codec")
        wanted = ("sendonly", "sendrecv") if purpose == "publish" else ("recvonly", "sendrecv")
        if m.direction not in (None, *wanted):
            raise BadArgs(f"a {purpose} offer must {purpose} video", code="bad_direction")
    check_candidates(parsed, allow_loopback)
    rids = vhook.offered_rids(sdp)
    if any(r not in QUALITIES for r in rids) or len(set(rids)) != len(rids):
        raise BadArgs("simulcast RIDs are 'l', 'm' and 'h'", code="bad_simulcast")
    return len(kinds)
