"""The aiortc hook (server/rtc_passthrough.py): fails loudly if an aiortc upgrade breaks it."""

from __future__ import annotations

import threading

import aiortc
import pytest
from aiortc import RTCPeerConnection
from aiortc.rtcrtpreceiver import RTCRtpReceiver

from server.media import passthrough as rtc_passthrough
from server.media.passthrough import EncodedTrack, PassthroughBroken, tap_receiver

from .audio_helpers import CONFIG, connected, loopback_ice, opus_tone  # noqa: F401
from .waiting import eventually


def test_pinned_aiortc_has_the_hooked_internals() -> None:
    from importlib.metadata import version

    assert aiortc.__version__ == rtc_passthrough.PINNED, (
        "aiortc changed: re-read rtc_passthrough.py against the new RTCRtpReceiver, "
        "RTCRtpSender and RTCDtlsTransport, then update PINNED"
    )
    assert version("aioice") == rtc_passthrough.PINNED_AIOICE, "aioice changed: see above"
    assert version("pylibsrtp") == rtc_passthrough.PINNED_PYLIBSRTP, "pylibsrtp changed"
    rtc_passthrough.self_check()


def test_self_check_names_what_broke(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(RTCRtpReceiver, "_handle_rtp_packet")
    with pytest.raises(PassthroughBroken, match="_handle_rtp_packet is gone"):
        rtc_passthrough.self_check()


@pytest.mark.usefixtures("loopback_ice")
async def test_encoded_in_encoded_out_without_decoding() -> None:
    """Packets pushed as av.Packet leave unchanged; the tap sees them before any decoder."""
    sender_pc, receiver_pc = RTCPeerConnection(CONFIG), RTCPeerConnection(CONFIG)
    track = EncodedTrack(limit=100)
    sender_pc.addTransceiver(track, direction="sendonly")
    await sender_pc.setLocalDescription(await sender_pc.createOffer())
    await receiver_pc.setRemoteDescription(sender_pc.localDescription)
    got: list[tuple[bytes, int]] = []
    receiver = receiver_pc.getTransceivers()[0].receiver
    tap_receiver(receiver, lambda p: got.append((p.payload, p.timestamp)))
    assert rtc_passthrough.tapped(receiver)
    await receiver_pc.setLocalDescription(await receiver_pc.createAnswer())
    await sender_pc.setRemoteDescription(receiver_pc.localDescription)
    await connected(sender_pc)
    decoders_before = {t.name for t in threading.enumerate() if t.name == "audio-decoder"}
    packets = opus_tone(440, 50)
    for n, p in enumerate(packets):
        track.push(p, n * 960)
    await eventually(
        lambda: len(got), until=lambda n: n >= len(packets), message="every packet to arrive"
    )
    assert [g[0] for g in got] == packets, "payload bytes must pass through unchanged"
    assert {(b[1] - a[1]) & 0xFFFFFFFF for a, b in zip(got, got[1:], strict=False)} == {960}
    assert track.sent == len(packets)
    # The receiver's decoder thread exists (aiortc starts it) but was never fed.
    assert receiver._RTCRtpReceiver__decoder_queue.qsize() == 0  # type: ignore[attr-defined]
    assert decoders_before <= {t.name for t in threading.enumerate()}
    await sender_pc.close()
    await receiver_pc.close()


async def test_encoded_track_drops_oldest_when_behind() -> None:
    dropped: list[int] = []
    track = EncodedTrack(limit=3, on_drop=lambda: dropped.append(1))
    for n in range(5):
        track.push(bytes([n]), n * 960)
    assert track.dropped == 2 and len(dropped) == 2
    first = await track.recv()
    assert bytes(first) == b"\x02" and first.pts == 2 * 960
    track.stop()
    with pytest.raises(aiortc.mediastreams.MediaStreamError):
        await track.recv()


@pytest.mark.usefixtures("loopback_ice")
async def test_direct_sender_writes_srtp_the_receiver_accepts() -> None:
    """DirectSender's packets decrypt and parse at a stock aiortc receiver, in order, on the
    sender's SSRC, and the sender's RTCP report counters follow them."""
    from server.media.passthrough import DirectSender

    sender_pc, receiver_pc = RTCPeerConnection(CONFIG), RTCPeerConnection(CONFIG)
    sender = sender_pc.addTrack(EncodedTrack())
    await sender_pc.setLocalDescription(await sender_pc.createOffer())
    await receiver_pc.setRemoteDescription(sender_pc.localDescription)
    got: list[tuple[bytes, int, int, int, int]] = []
    tap_receiver(
        receiver_pc.getTransceivers()[0].receiver,
        lambda p: got.append((p.payload, p.timestamp, p.sequence_number, p.ssrc, p.marker)),
    )
    await receiver_pc.setLocalDescription(await receiver_pc.createAnswer())
    direct = DirectSender(sender, payload_type=96)
    assert direct.push(b"early", 0) is False, "nothing goes out before the connection is up"
    await sender_pc.setRemoteDescription(receiver_pc.localDescription)
    await connected(sender_pc)
    packets = opus_tone(440, 30)
    for n, p in enumerate(packets):
        assert direct.push(p, 960 * (n + 1), marker=n == 0)
    await eventually(
        lambda: len(got), until=lambda n: n >= len(packets), message="every packet to arrive"
    )
    assert [g[0] for g in got] == packets
    assert {g[3] for g in got} == {sender._ssrc}
    assert {(b[2] - a[2]) & 0xFFFF for a, b in zip(got, got[1:], strict=False)} == {1}
    assert {(b[1] - a[1]) & 0xFFFFFFFF for a, b in zip(got, got[1:], strict=False)} == {960}
    assert [g[4] for g in got[:2]] == [1, 0], "the marker bit starts the talkspurt"
    assert direct.sent == len(packets) and direct.dropped == 1
    assert getattr(sender, "_RTCRtpSender__packet_count") > 20  # noqa: B009
    await sender_pc.close()
    await receiver_pc.close()
