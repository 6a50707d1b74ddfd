"""The node's side of a listener without a path (server/media/signalling.py, reach.py).

An aiortc listener offers while every UDP datagram in the namespace is dropped: after
``NO_PATH_AFTER`` the node counts it as a listener without audio and tells the moderators
(ephemeral ``reach``); after ``CLOSE_UNCONNECTED_AFTER`` it closes the peer connection
(aiortc never fails one by itself) with ``rtc.closed`` ``no_path``. The two delays are made
short here; what they mean does not change.
"""

from __future__ import annotations

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from server.client import Client
from server.media import signalling

from .audio_helpers import CONFIG, loopback_ice, publish  # noqa: F401 (fixture)
from .reach_helpers import Rules
from .waiting import eventually

pytestmark = pytest.mark.usefixtures("loopback_ice")


async def test_a_listener_without_a_path_is_counted_then_closed(
    start_node, invites, rules: Rules, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(signalling, "NO_PATH_AFTER", 1.0)
    monkeypatch.setattr(signalling, "CLOSE_UNCONNECTED_AFTER", 3.0)
    node = await start_node()
    chair = await Client.connect(node.url, invites.mint(room="plenary", role="moderator", name="C"))
    ana = await Client.connect(node.url, invites.mint(room="plenary", role="participant", name="A"))
    rules.set("meta l4proto udp counter drop")
    pc = RTCPeerConnection(CONFIG)
    try:
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        reply = await ana.rpc("rtc.offer", purpose="listen", sdp=pc.localDescription.sdp)
        assert reply["ok"], reply
        await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
        room = node.node.feature["audio"].rooms["plenary"]
        assert room.signalling.reach() == {"listening": 1, "no_audio": 0}
        counted = await chair.wait_message(
            lambda m: m.get("kind") == "reach" and m["no_audio"] == 1, timeout=10
        )
        assert counted["node"] == node.node.name and counted["listening"] == 1
        assert not [m for m in ana.received if m.get("kind") == "reach"], "moderators only"
        closed = await ana.wait_message(lambda m: m["type"] == "rtc.closed", timeout=10)
        assert closed["pc"] == "listen" and closed["code"] == "no_path"
        # Still without audio (it wants to listen and has nothing) until it stops or leaves.
        assert room.signalling.reach() == {"listening": 1, "no_audio": 1}
        assert (await ana.rpc("rtc.close", pc="listen"))["ok"]
        assert room.signalling.reach() == {"listening": 0, "no_audio": 0}
        await chair.wait_message(
            lambda m: m.get("kind") == "reach" and m["listening"] == 0, timeout=10
        )
        await eventually(
            lambda: room.metrics.peer_connections.labels("listen")._value.get(),
            until=lambda n: n == 0,
            message="the node's listening peer connection to be closed",
        )
    finally:
        await pc.close()
        await chair.close()
        await ana.close()


def opus_fmtp(sdp: str) -> str:
    """The ``a=fmtp`` parameters of the answer's Opus payload type."""
    pt = next(line.split()[0].split(":")[1] for line in sdp.split("\r\n") if "opus/48000" in line)
    return next(
        line.split(" ", 1)[1] for line in sdp.split("\r\n") if line.startswith(f"a=fmtp:{pt} ")
    )


async def test_floor_and_booth_microphones_are_asked_for_dtx_beside_fec(
    start_node, invites
) -> None:  # type: ignore[no-untyped-def]
    """The answer to a floor or booth microphone carries ``useinbandfec=1;usedtx=1``
    (tests/test_reach_dtx.py measures what DTX saves); a listener's, no ``usedtx``."""
    node = await start_node()
    chair = await Client.connect(node.url, invites.mint(room="plenary", role="moderator", name="C"))
    ivan = await Client.connect(
        node.url, invites.mint(room="plenary", role="interpreter", name="I", booth="es")
    )
    ana = await Client.connect(node.url, invites.mint(room="plenary", role="participant", name="A"))
    assert (await ivan.command("air.take"))["ok"]
    floor = await publish(chair)
    booth = await publish(ivan, "es")
    pc = RTCPeerConnection(CONFIG)
    try:
        for mic in (floor, booth):
            params = opus_fmtp(mic.reply["sdp"]).split(";")
            assert "useinbandfec=1" in params and "usedtx=1" in params, params
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        reply = await ana.rpc("rtc.offer", purpose="listen", sdp=pc.localDescription.sdp)
        assert reply["ok"], reply
        assert "usedtx" not in opus_fmtp(reply["sdp"])
    finally:
        await pc.close()
        for mic in (floor, booth):
            await mic.pc.close()
        for c in (chair, ivan, ana):
            await c.close()
