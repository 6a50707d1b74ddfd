"""The track kind: one value holds what the ingest/bus path needs to know of a media type."""

from __future__ import annotations

import dataclasses

import pytest
from aiortc import RTCPeerConnection

from server.errors import BadArgs
from server.media.kind import AUDIO, Kind
from server.media.setup import check_offer

# Not built: a second kind only shows that the path takes the kind, not audio constants.
VIDEO = dataclasses.replace(
    AUDIO, name="video", codec="vp8", clock_rate=90_000, max_payload=1200, levels=False
)


async def offer(*kinds: str) -> str:
    pc = RTCPeerConnection()
    for kind in kinds:
        pc.addTransceiver(kind, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp: str = pc.localDescription.sdp
    await pc.close()
    return sdp


def test_audio_is_opus_at_48_khz_on_its_own_bus_channels() -> None:
    assert (AUDIO.mime, AUDIO.clock_rate, AUDIO.max_payload) == ("audio/opus", 48_000, 1400)
    assert AUDIO.levels
    assert AUDIO.bus_channel("plenary", "floor") == "hc:{plenary}:audio:floor"
    assert VIDEO.bus_channel("plenary", "floor") == "hc:{plenary}:video:floor"
    with pytest.raises(dataclasses.FrozenInstanceError):
        AUDIO.max_payload = 9000  # type: ignore[misc]


async def test_offers_are_checked_against_the_kind() -> None:
    audio_offer, video_offer = await offer("audio"), await offer("video")
    lines, pt = check_offer(audio_offer, "publish")
    assert lines == 1 and pt > 0
    lines, pt = check_offer(video_offer, "publish", VIDEO)
    assert lines == 1 and pt > 0
    with pytest.raises(BadArgs) as refused:
        check_offer(video_offer, "publish", AUDIO)
    assert refused.value.code == "audio_only"
    with pytest.raises(BadArgs) as refused:
        check_offer(audio_offer, "publish", VIDEO)
    assert refused.value.code == "video_only"
    h264 = Kind("video", "h264", 90_000, 1200, 60.0, 30.0, levels=False)
    assert check_offer(video_offer, "publish", h264)[0] == 1  # aiortc offers VP8 and H264
    av1 = dataclasses.replace(h264, codec="av1")
    with pytest.raises(BadArgs) as refused:
        check_offer(video_offer, "publish", av1)
    assert refused.value.code == "no_av1"
