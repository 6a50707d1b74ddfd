"""Media limits: remote candidates per offer, loopback/link-local addresses by setting,
STUN checks bounded by the candidate cap, one listening/publishing peer per person."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from aiortc import RTCPeerConnection

from server.client import Client
from server.media.setup import MAX_CANDIDATES
from server.node.auth import Invites

from .audio_helpers import CONFIG, listen, loopback_ice  # noqa: F401 (fixture)
from .conftest import NodeFactory

pytestmark = pytest.mark.usefixtures("loopback_ice")


async def offer_sdp() -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection(CONFIG)
    for _ in range(2):
        pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


def with_candidates(sdp: str, addresses: list[tuple[str, int]]) -> str:
    """``sdp`` with its own candidates replaced by ``addresses`` (in every m-line)."""
    cands = [
        f"a=candidate:{n} 1 udp {2130706431 - n} {ip} {port} typ host"
        for n, (ip, port) in enumerate(addresses, 1)
    ]
    out: list[str] = []
    for line in sdp.split("\r\n"):
        if line.startswith("a=candidate:") or line == "a=end-of-candidates":
            continue
        out.append(line)
        if line.startswith("a=mid:"):
            out.extend([*cands, "a=end-of-candidates"])
    return "\r\n".join(out)


async def test_at_most_eight_candidates_and_what_the_node_sends_them(
    start_node: NodeFactory, invites: Invites
) -> None:
    node = await start_node()
    ana = await Client.connect(node.url, invites.mint(room="plenary", role="participant", name="A"))
    socks = []
    for _ in range(MAX_CANDIDATES + 1):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        socks.append(s)
    addresses = [s.getsockname() for s in socks]
    pc, sdp = await offer_sdp()
    try:
        reply = await ana.rpc("rtc.offer", purpose="listen", sdp=with_candidates(sdp, addresses))
        assert reply["ok"] is False and reply["code"] == "too_many_candidates", reply
        # Eight pass; measure the STUN checks the node then sends to them.
        started = time.monotonic()
        reply = await ana.rpc(
            "rtc.offer", purpose="listen", sdp=with_candidates(sdp, addresses[:MAX_CANDIDATES])
        )
        assert reply["ok"] is True, reply
        await asyncio.sleep(3.0)
        counts = []
        for s in socks:
            n = 0
            while True:
                try:
                    s.recvfrom(2048)
                except BlockingIOError:
                    break
                n += 1
            counts.append(n)
        elapsed = time.monotonic() - started
        assert counts[-1] == 0, "the refused offer's extra address got nothing"
        assert all(n > 0 for n in counts[:MAX_CANDIDATES]), counts
        # aioice paces one new check per 20 ms and retransmits each after 0.5, 1, 2 … s
        # (7 sends over 31.5 s): one pair per address here (the node has one candidate),
        # so at most 4 packets per address in these 3 s.
        assert max(counts) <= 4, (counts, elapsed)
        print(f"STUN packets per address in {elapsed:.1f} s: {counts[:MAX_CANDIDATES]}")
    finally:
        await pc.close()
        for s in socks:
            s.close()
        await ana.close()


async def test_loopback_and_link_local_candidates_by_setting(
    start_node: NodeFactory, invites: Invites
) -> None:
    strict = await start_node(settings={"media_loopback": False})
    relaxed = await start_node()  # auto: the node binds 127.0.0.1, so loopback is allowed
    assert relaxed.node.settings.loopback_media and not strict.node.settings.loopback_media
    token = invites.mint(room="plenary", role="participant", name="Ana")
    pc, sdp = await offer_sdp()
    try:
        on_strict = await Client.connect(strict.url, token)
        on_relaxed = await Client.connect(relaxed.url, token)
        for ip in ("127.0.0.1", "169.254.10.20", "::1", "fe80::1"):
            reply = await on_strict.rpc(
                "rtc.offer", purpose="listen", sdp=with_candidates(sdp, [(ip, 40000)])
            )
            assert reply["code"] == "bad_candidate", (ip, reply)
            await asyncio.sleep(1.0)  # offers are rate limited (1/s)
        for ip in ("0.0.0.0", "224.0.0.1", "255.255.255.255"):
            reply = await on_relaxed.rpc(
                "rtc.offer", purpose="listen", sdp=with_candidates(sdp, [(ip, 40000)])
            )
            assert reply["code"] == "bad_candidate", (ip, reply)
        await asyncio.sleep(1.0)
        # A real peer in the loopback namespace: refused by the strict node, served here.
        reply = await on_strict.rpc("rtc.offer", purpose="listen", sdp=sdp)
        assert reply["code"] == "bad_candidate", reply
        ear = await listen(on_relaxed)
        await ear.close()
        await on_strict.close()
        await on_relaxed.close()
    finally:
        await pc.close()


async def test_a_second_window_replaces_the_first_listener(
    start_node: NodeFactory, invites: Invites
) -> None:
    node = await start_node()
    token = invites.mint(room="plenary", role="participant", name="Ana")
    one, two = await Client.connect(node.url, token), await Client.connect(node.url, token)
    first = await listen(one)
    second = await listen(two)
    closed = await one.wait_message(lambda m: m["type"] == "rtc.closed")
    assert closed["pc"] == "listen" and closed["code"] == "replaced"
    metrics = node.node.metrics.registry
    async with asyncio.timeout(5):
        while metrics.get_sample_value("hemicycle_peer_connections", {"kind": "listen"}) != 1:
            await asyncio.sleep(0.02)
    assert not any(m["type"] == "rtc.closed" for m in two.received)
    for x in (first, second):
        await x.close()
    await one.close()
    await two.close()
