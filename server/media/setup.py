"""Setting up WebRTC: the ``[media]`` config (ICE servers) and the checks on offers."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, replace
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer
from aiortc import sdp as aiortc_sdp

from ..audio import FLOOR
from ..errors import BadArgs, ConfigError
from .kind import AUDIO, Kind
from .turn import TurnConfig

MAX_CANDIDATES = 8
"""Distinct remote candidates an offer may list: the node sends STUN checks to each, so
more would make it a prober (docs/security.md, "Limits")."""


@dataclass(frozen=True)
class MediaConfig:
    """``[media]`` of the assembly file."""

    ice_servers: tuple[dict[str, Any], ...] = ()
    """Handed to browsers: ``[{urls, username?, credential?}…]``. Default none: host
    candidates, which is what one machine and a LAN need."""
    server_ice_servers: tuple[dict[str, Any], ...] = ()
    """The node's own STUN/TURN, when it sits behind NAT."""
    turn: TurnConfig | None = None
    """``[media] turn``: relays whose credentials each person gets on request (``rtc.ice``)."""
    workers: int = 0
    """``[media] workers``: media worker processes that hold the listeners' peer connections
    (server/media/workers.py); 0: the node's own process holds them. The assembly file's
    default is one per core (:func:`default_workers`)."""
    pin_workers: bool = True
    """``[media] pin_workers``: pin worker ``k`` to the ``k``-th core this node may run on
    (round robin): a worker then keeps its listeners' SRTP contexts and sockets warm in one
    core's cache and is never migrated mid fan-out (p99 at 800 listeners on two cores: 7.7–
    9.2 ms pinned, 9.2–10.6 ms not; docs/benchmarks.md). ``false`` leaves them to the
    scheduler (a machine whose cores other busy processes are pinned to)."""
    allow_loopback: bool = False
    """Whether offers may list loopback and link-local candidates: only when the node
    itself runs on loopback (``Settings.media_loopback``; tests, one machine)."""

    def with_loopback(self, allow: bool) -> MediaConfig:
        return replace(self, allow_loopback=allow)

    def with_workers(self, workers: int | None) -> MediaConfig:
        """``HEMICYCLE_MEDIA_WORKERS`` (when set) overrides the assembly file."""
        return self if workers is None else replace(self, workers=workers)

    @classmethod
    def from_extra(cls, extra: Any, source: str = "<config>", turn_secret: str = "") -> MediaConfig:
        """``turn_secret`` (``HEMICYCLE_TURN_SECRET``) overrides ``media.turn.secret``."""
        table = extra.get("media", {}) if hasattr(extra, "get") else {}
        if not isinstance(table, dict):
            raise ConfigError(source, "media", "expected a table")
        return cls(
            ice_servers=_ice_list(table, "ice_servers", source),
            server_ice_servers=_ice_list(table, "server_ice_servers", source),
            turn=TurnConfig.from_table(table.get("turn"), source, turn_secret),
            workers=_workers(table.get("workers", default_workers()), source),
            pin_workers=_bool(table.get("pin_workers", True), "media.pin_workers", source),
        )

    def ice_servers_for(self, pid: str) -> list[dict[str, Any]]:
        """What ``pid``'s browser passes to ``RTCPeerConnection``: the configured servers,
        then the TURN relays with credentials minted now for ``pid``."""
        servers = [dict(s) for s in self.ice_servers]
        if self.turn is not None:
            servers.append(self.turn.credentials(pid))
        return servers

    def rtc_configuration(self) -> RTCConfiguration:
        servers = [
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in self.server_ice_servers
        ]
        return RTCConfiguration(iceServers=servers)


MAX_WORKERS = 64


def allowed_cores() -> set[int]:
    """The cores this process may run on (its affinity mask; all of them where the platform
    has no such mask)."""
    try:
        return os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def default_workers() -> int:
    """One media worker per core this process may run on."""
    return len(allowed_cores())


def _workers(value: Any, source: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_WORKERS:
        raise ConfigError(
            source, "media.workers", f"expected a whole number 0 to {MAX_WORKERS}, got {value!r}"
        )
    return value


def _bool(value: Any, where: str, source: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(source, where, f"expected true or false, got {value!r}")
    return value


def _ice_list(table: dict[str, Any], key: str, source: str) -> tuple[dict[str, Any], ...]:
    items = table.get(key, [])
    if not isinstance(items, list):
        raise ConfigError(source, f"media.{key}", "expected a list of tables")
    out = []
    for i, item in enumerate(items):
        where = f"media.{key}[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(source, where, "expected a table")
        urls = item.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if (
            not isinstance(urls, list)
            or not urls
            or not all(
                isinstance(u, str) and u.split(":", 1)[0] in ("stun", "turn", "turns") for u in urls
            )
        ):
            raise ConfigError(source, f"{where}.urls", "expected stun:/turn:/turns: URLs")
        entry: dict[str, Any] = {"urls": urls}
        for k in ("username", "credential"):
            if k in item:
                if not isinstance(item[k], str):
                    raise ConfigError(source, f"{where}.{k}", "expected a string")
                entry[k] = item[k]
        out.append(entry)
    return tuple(out)


def check_offer(
    sdp: str, purpose: str, kind: Kind = AUDIO, *, allow_loopback: bool = False, lanes: int = 1
) -> tuple[int, int]:
    """Refuse an offer that is not only ``kind`` in its codec; return ``(m-lines, payload type)``.

    Error codes name the kind: ``no_audio``, ``audio_only``, ``no_opus`` for :data:`AUDIO`;
    ``too_many_candidates`` past :data:`MAX_CANDIDATES`, ``bad_candidate`` for an address
    the node must not send checks to. A listen offer has ``lanes`` m-lines (what one hears)
    or twice that (and the floor underneath); with one lane, one or two.
    """
    media, codec = kind.name, kind.codec
    if not sdp.startswith("v=0"):
        raise BadArgs("the offer is not an SDP session description", code="bad_sdp")
    try:
        parsed = aiortc_sdp.SessionDescription.parse(sdp)
    except Exception as exc:
        raise BadArgs(f"the offer cannot be parsed: {exc}", code="bad_sdp") from None
    kinds = [m.kind for m in parsed.media]
    if not kinds:
        raise BadArgs("the offer has no media", code=f"no_{media}")
    if any(k != media for k in kinds):
        raise BadArgs(
            f"only {media} is carried here, the offer has {', '.join(kinds)}",
            code=f"{media}_only",
        )
    wanted = 1 if purpose == "publish" else 2 * lanes
    if len(kinds) > wanted:
        raise BadArgs(
            f"a {purpose} offer has at most {wanted} {media} m-line(s)", code="too_many_tracks"
        )
    if purpose == "listen" and len(kinds) not in (lanes, 2 * lanes):
        raise BadArgs(
            f"a listen offer for {lanes} lanes has {lanes} or {2 * lanes} {media} m-lines, "
            f"not {len(kinds)}",
            code="bad_lanes",
        )
    found = [
        c.payloadType
        for c in parsed.media[0].rtp.codecs
        if c.mimeType.lower() == kind.mime
        and c.clockRate == kind.clock_rate
        and c.payloadType is not None
    ]
    if not found or any(
        not any(c.mimeType.lower() == kind.mime for c in m.rtp.codecs) for m in parsed.media
    ):
        raise BadArgs(
            f"the offer does not offer {codec} at {kind.clock_rate} Hz", code=f"no_{codec}"
        )
    for m in parsed.media:
        if purpose == "publish" and m.direction not in (None, "sendonly", "sendrecv"):
            raise BadArgs(f"a publish offer must send {media}", code="bad_direction")
        if purpose == "listen" and m.direction not in (None, "recvonly", "sendrecv"):
            raise BadArgs(f"a listen offer must receive {media}", code="bad_direction")
    check_candidates(parsed, allow_loopback)
    return len(kinds), int(found[0])


def check_candidates(parsed: aiortc_sdp.SessionDescription, allow_loopback: bool) -> None:
    """At most :data:`MAX_CANDIDATES` distinct remote candidates; none the node must not
    probe: unspecified, multicast, broadcast or reserved addresses never; loopback and
    link-local only when ``allow_loopback``. Host names (mDNS ``….local``) pass: aioice
    resolves them on the local link only."""
    seen: set[tuple[str, str, int]] = set()
    for m in parsed.media:
        for c in m.ice_candidates:
            seen.add((c.protocol.lower(), c.ip, c.port))
            try:
                ip = ipaddress.ip_address(c.ip)
            except ValueError:
                continue
            if ip.is_unspecified or ip.is_multicast or ip.is_reserved or c.ip.endswith(".255"):
                raise BadArgs(f"the offer lists a candidate at {c.ip}", code="bad_candidate")
            if (ip.is_loopback or ip.is_link_local) and not allow_loopback:
                raise BadArgs(
                    f"the offer lists a loopback or link-local candidate ({c.ip}); "
                    "this node does not run on loopback",
                    code="bad_candidate",
                )
            if not 0 < c.port < 65536:
                raise BadArgs(f"the offer lists a candidate port {c.port}", code="bad_candidate")
    if len(seen) > MAX_CANDIDATES:
        raise BadArgs(
            f"the offer lists {len(seen)} candidates; at most {MAX_CANDIDATES} are taken",
            code="too_many_candidates",
        )


def answer_payload_type(sdp: str, kind: Kind = AUDIO) -> int:
    parsed = aiortc_sdp.SessionDescription.parse(sdp)
    for c in parsed.media[0].rtp.codecs:
        if c.mimeType.lower() == kind.mime and c.payloadType is not None:
            return int(c.payloadType)
    raise BadArgs(f"no {kind.codec} codec could be negotiated", code=f"no_{kind.codec}")


OPUS_FMTP = "minptime=10;useinbandfec=1"
"""RFC 7587 §6.1: ``useinbandfec=1`` asks the sender for Opus in-band FEC (a low-bitrate copy
of the previous frame in each packet), which a receiver decodes in place of a lost packet."""


def with_opus_fec(answer: str, payload_type: int) -> str:
    """``answer`` with ``a=fmtp:<pt> minptime=10;useinbandfec=1`` for its Opus payload type.

    aiortc answers with its own (empty) Opus parameters, and Chromium then sends no FEC:
    the publisher must read the wish in the answer. Both directions get it; a listener's
    decoder uses FEC when a packet is missing and the next one carries it.
    """
    rtpmap = f"a=rtpmap:{payload_type} opus/48000/2"
    fmtp = f"a=fmtp:{payload_type} "
    lines = answer.split("\r\n")
    out = []
    for line in lines:
        if line.startswith(fmtp):
            continue  # replaced by ours, right after the rtpmap
        out.append(line)
        if line.lower() == rtpmap.lower():
            out.append(fmtp + OPUS_FMTP)
    return "\r\n".join(out)


OPUS_DTX = "usedtx=1"
"""RFC 7587 §6.1: ``usedtx=1`` asks the sender for discontinuous transmission — in silence
Chromium's Opus sends one small comfort-noise packet every 400 ms instead of 50 packets a
second. The passthrough keeps the timestamps' gaps (``relay.Outlet``) and marks the next
talkspurt, so a listener's decoder fills the pause with comfort noise."""

DTX_FLOOR = True
"""Floor microphones (the chair, the speaker with the floor, panelists): on. Open floor
microphones are silent most of the time (the chair while a delegate speaks, a panelist
waiting), and speech with pauses halves its packets (docs/benchmarks.md, "Reach: DTX");
the onsets of speech arrive whole (the same measure). A silent microphone then no longer
holds a floor lane (``relay.FloorLanes`` frees a lane after ``FLOOR_GONE``)."""
DTX_BOOTH = True
"""Booth microphones (interpreters): on, for the same measure: an interpreter pauses
between the speaker's sentences and while listening to a new speaker, and the booth's
microphone stays open the whole session."""


def dtx_for(target: str) -> bool:
    """Whether a microphone publishing into ``target`` (the floor or a channel) is asked
    for DTX in the answer (:func:`with_opus_dtx`)."""
    return DTX_FLOOR if target == FLOOR else DTX_BOOTH


def with_opus_dtx(answer: str, payload_type: int) -> str:
    """``answer`` with ``usedtx=1`` added to the fmtp of its Opus payload type.

    Call after :func:`with_opus_fec` (which writes that fmtp line); FEC stays on beside DTX:
    the packets that are sent still carry the previous frame's low-bitrate copy.
    """
    fmtp = f"a=fmtp:{payload_type} "
    lines = answer.split("\r\n")
    return "\r\n".join(
        f"{line};{OPUS_DTX}" if line.startswith(fmtp) and OPUS_DTX not in line else line
        for line in lines
    )
