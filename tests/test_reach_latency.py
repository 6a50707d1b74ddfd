"""What a TURN relay adds to a listener's latency: one aiortc microphone on the floor, two
aiortc listeners — one direct, one forced through coturn (``iceTransportPolicy="relay"``,
TURN over TCP, credentials from ``rtc.ice``) — and each packet's time from the microphone's
push to each ear. Printed (``-s``); asserted only that the relayed ear hears the floor
through a relay candidate, nearly every packet.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest
from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from server.client import Client

from .audio_helpers import listen, loopback_ice, opus_tone, publish, tagged  # noqa: F401
from .reach_helpers import TurnServer, with_turn

pytestmark = pytest.mark.usefixtures("loopback_ice")
COUNT = 250


def latencies(ear, sent: dict[int, float]) -> list[float]:  # type: ignore[no-untyped-def]
    return [h.at - sent[n] for h in ear.on(0) for tag, n in [ear_marker(h.payload)] if n in sent]


def ear_marker(payload: bytes) -> tuple[int, int]:
    return int.from_bytes(payload[-6:-4], "big"), int.from_bytes(payload[-4:], "big")


@pytest.mark.parametrize("transport", ["tcp"])  # aioice verifies TURNS certificates with
# the system's CAs and takes no other: the test's self-signed TLS relay is Chromium's alone
async def test_turn_adds_little_latency(
    start_node, invites, assembly, turn_server: TurnServer, transport
) -> None:  # type: ignore[no-untyped-def]
    node = await start_node(config=with_turn(assembly, turn_server.urls(transport)))
    chair = await Client.connect(node.url, invites.mint(room="plenary", role="moderator", name="C"))
    ana = await Client.connect(node.url, invites.mint(room="plenary", role="participant", name="A"))
    bob = await Client.connect(node.url, invites.mint(room="plenary", role="participant", name="B"))
    mic = await publish(chair)
    direct = await listen(ana)
    ice = (await bob.rpc("rtc.ice"))["ice_servers"][-1]
    relay_config = RTCConfiguration(
        iceServers=[RTCIceServer(ice["urls"], ice["username"], ice["credential"])],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY,
    )
    relayed = await listen(bob, config=relay_config, wait=15.0)
    try:
        pair = relayed.pc.getTransceivers()[0].receiver.transport.transport._connection
        assert pair._nominated[1].local_candidate.type == "relay"
        packets = tagged(opus_tone(440, COUNT), 7)
        sent: dict[int, float] = {}
        start = time.monotonic()
        for n, p in enumerate(packets):
            sent[n] = time.monotonic()
            mic.track.push(p, mic.ts)
            mic.ts += 960
            delay = start + (n + 1) * 0.02 - time.monotonic()
            if delay > 0:  # pacing like a microphone, not synchronisation
                await asyncio.sleep(delay)
        await direct.wait(0, int(COUNT * 0.9), timeout=10)
        await relayed.wait(0, int(COUNT * 0.9), timeout=10)
        figures = {}
        for label, ear in (("direct", direct), (f"TURN/{transport}", relayed)):
            lat = sorted(latencies(ear, sent))
            figures[label] = lat
            p95 = lat[int(len(lat) * 0.95)]
            print(
                f"reach latency: {label}: {len(lat)} packets, median "
                f"{statistics.median(lat) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms"
            )
        added = statistics.median(figures[f"TURN/{transport}"]) - statistics.median(
            figures["direct"]
        )
        print(f"reach latency: TURN/{transport} adds {added * 1000:.1f} ms (median)")
    finally:
        for x in (direct, relayed, mic):
            await x.close()
        for c in (chair, ana, bob):
            await c.close()
