"""Live audio through real nodes and real aiortc peers: the floor, rights, bad input, leaks."""

from __future__ import annotations

import asyncio

import pytest

from .audio_helpers import (
    listen,
    loopback_ice,  # noqa: F401 (fixture)
    marker,
    opus_tone,
    people,
    publish,
    settled,
    steps,
    tagged,
    udp_sockets,
)
from .conftest import timeout
from .waiting import eventually

pytestmark = pytest.mark.usefixtures("loopback_ice")


@pytest.fixture(params=[0, 2], ids=["in-process", "2-workers"])
def media_workers(request: pytest.FixtureRequest) -> int:
    """Each test runs with listeners in the node's process and on two media workers."""
    return int(request.param)


def metric(node, name: str, **labels: str) -> float:  # type: ignore[no-untyped-def]
    value = node.node.metrics.registry.get_sample_value(name, labels or None)
    return float(value or 0.0)


async def test_floor_payloads_arrive_unchanged(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    chair, ana = await people(node, invites, ("Chair", "moderator"), ("Ana", "participant"))
    ear = await listen(ana)
    mic = await publish(chair, "floor")
    assert mic.reply["on_air"] is True
    sent = tagged(opus_tone(440, 100), tag=1)
    await mic.play(sent)
    heard = await ear.wait(0, 100, timeout(5))
    assert [h.payload for h in heard] == sent, "listener must get the publisher's bytes"
    assert steps(heard) == {960}, f"RTP clock must advance one frame per packet: {steps(heard)}"
    assert ear.on(1) == [], "nothing underneath while listening to the floor"
    assert metric(node, "hemicycle_audio_packets_in_total", outcome="forwarded") == 100
    await mic.close()
    await ear.close()
    for c in (chair, ana):
        await c.close()


async def test_nobody_hears_their_own_microphone(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    (chair,) = await people(node, invites, ("Chair", "moderator"))
    ear = await listen(chair)
    mic = await publish(chair, "floor")
    await mic.play(tagged(opus_tone(440, 25), tag=1))
    await settled(node, [ear], packets_in=25)
    assert ear.on(0) == []
    await mic.close()
    await ear.close()
    await chair.close()


async def test_speaker_needs_the_floor(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    chair, bo, ana = await people(
        node, invites, ("Chair", "moderator"), ("Bo", "participant"), ("Ana", "participant")
    )
    refused = await publish(bo, "floor", expect_ok=False)
    assert refused.reply["code"] == "not_granted"
    await chair.command("floor.grant", {"pid": bo.me})
    await bo.wait_for(lambda s: bo.me in s["core"]["speakers"])
    ear = await listen(ana)
    mic = await publish(bo, "floor")
    sent = tagged(opus_tone(300, 20), tag=2)
    await mic.play(sent)
    await ear.wait(0, 20, timeout(5))
    await chair.command("floor.revoke", {"pid": bo.me})
    closed = await bo.wait_message(lambda m: m["type"] == "rtc.closed", timeout(5))
    assert closed["code"] == "not_granted" and closed["pc"] == "publish"
    await mic.close()
    await ear.close()
    for c in (chair, bo, ana):
        await c.close()


async def test_moderator_mutes_a_speaker(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    chair, bo, ana = await people(
        node, invites, ("Chair", "moderator"), ("Bo", "participant"), ("Ana", "participant")
    )
    await chair.command("floor.grant", {"pid": bo.me})
    ear = await listen(ana)
    mic = await publish(bo, "floor")
    packets = tagged(opus_tone(300, 60), tag=3)
    await mic.play(packets[:20])
    await ear.wait(0, 20, timeout(5))
    await chair.command("audio.mute", {"pid": bo.me})
    await mic.play(packets[20:40])
    await settled(node, [ear], packets_in=40)
    assert len(ear.on(0)) == 20, "a muted speaker's packets must be dropped on the server"
    assert metric(node, "hemicycle_audio_packets_in_total", outcome="off_air") >= 20
    reply = await bo.request("audio.unmute", {"pid": bo.me})
    assert reply["code"] == "forbidden", "only the chair unmutes"
    await chair.command("audio.unmute", {"pid": bo.me})
    await mic.play(packets[40:])
    heard = await ear.wait(0, 40, timeout(5))
    assert [marker(h.payload)[1] for h in heard] == list(range(20)) + list(range(40, 60))
    await mic.close()
    await ear.close()
    for c in (chair, bo, ana):
        await c.close()


AUDIO_ONLY_PCMU = """v=0\r
o=- 1 1 IN IP4 0.0.0.0\r
s=-\r
t=0 0\r
m=audio 9 UDP/TLS/RTP/SAVPF 0\r
c=IN IP4 0.0.0.0\r
a=rtpmap:0 PCMU/8000\r
a=sendonly\r
"""
VIDEO = AUDIO_ONLY_PCMU.replace("m=audio 9 UDP/TLS/RTP/SAVPF 0", "m=video 9 UDP/TLS/RTP/SAVPF 96")
NO_MEDIA = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"purpose": "publish", "sdp": "garbage"}, "bad_sdp"),
        ({"purpose": "publish", "sdp": 42}, "bad_args"),
        ({"purpose": "publish"}, "bad_args"),
        ({"purpose": "shout", "sdp": NO_MEDIA}, "bad_args"),
        ({"purpose": "publish", "sdp": NO_MEDIA}, "no_audio"),
        ({"purpose": "publish", "sdp": VIDEO}, "audio_only"),
        ({"purpose": "publish", "sdp": AUDIO_ONLY_PCMU}, "no_opus"),
        ({"purpose": "listen", "sdp": AUDIO_ONLY_PCMU}, "no_opus"),
        ({"purpose": "publish", "sdp": "v=0\r\n" + "a=x\r\n" * 5000}, "bad_args"),
    ],
)
async def test_bad_offers_are_refused(start_node, invites, fields, code) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    (chair,) = await people(node, invites, ("Chair", "moderator"))
    before = udp_sockets()
    reply = await chair.rpc("rtc.offer", **fields)
    assert reply["ok"] is False and reply["code"] == code, reply
    assert udp_sockets() == before
    assert metric(node, "hemicycle_peer_connections", kind="publish") == 0
    await chair.close()


async def test_a_broken_offer_that_parses_is_refused(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    (chair,) = await people(node, invites, ("Chair", "moderator"))
    opus_no_ice = AUDIO_ONLY_PCMU.replace(
        "0\r\na=rtpmap:0 PCMU/8000", "111\r\na=rtpmap:111 opus/48000/2"
    )
    reply = await chair.rpc("rtc.offer", purpose="publish", sdp=opus_no_ice)
    assert reply["ok"] is False and reply["code"] == "bad_sdp", reply
    assert metric(node, "hemicycle_peer_connections", kind="publish") == 0
    await chair.close()


async def test_publishing_without_the_right(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    ana, ivan = await people(
        node, invites, ("Ana", "participant"), ("Ivan", "interpreter"), Ivan={"booth": "es"}
    )
    for client, target, code in (
        (ana, "floor", "not_granted"),
        (ana, "es", "forbidden"),
        (ivan, "floor", "forbidden"),
        (ivan, "xx", "no_such_channel"),
        (ivan, "fr", "not_your_booth"),
    ):
        mic = await publish(client, target, expect_ok=False)
        assert mic.reply["code"] == code, (target, mic.reply)
    reply = await ana.rpc("rtc.offer", purpose="publish", target=["floor"], sdp=NO_MEDIA)
    assert reply["code"] in ("bad_args", "no_audio")
    for c in (ana, ivan):
        await c.close()


async def test_offers_are_rate_limited(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    (ana,) = await people(node, invites, ("Ana", "participant"))
    codes = [
        (await ana.rpc("rtc.offer", purpose="listen", sdp="garbage"))["code"] for _ in range(7)
    ]
    assert codes[:5] == ["bad_sdp"] * 5 and "rate_limited" in codes[5:], codes
    await ana.close()


async def test_unknown_rtc_message(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    (ana,) = await people(node, invites, ("Ana", "participant"))
    reply = await ana.rpc("rtc.dance")
    assert reply["code"] == "unknown_type"
    reply = await ana.rpc("rtc.under", on=True)
    assert reply["code"] == "not_listening"
    reply = await ana.rpc("rtc.under", on="yes")
    assert reply["code"] == "bad_args"
    await ana.close()


async def test_a_flooding_publisher_is_dropped_not_others(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    chair, bo, ana = await people(
        node, invites, ("Chair", "moderator"), ("Bo", "participant"), ("Ana", "participant")
    )
    ear = await listen(ana)
    flood = await publish(bo, "floor", expect_ok=False)  # not granted: refused
    assert flood.reply["code"] == "not_granted"
    await chair.command("floor.grant", {"pid": bo.me})
    flood = await publish(bo, "floor")
    mic = await publish(chair, "floor")
    storm = tagged(opus_tone(300, 50), tag=9) * 20
    legit = tagged(opus_tone(440, 50), tag=1)
    await asyncio.gather(flood.play(storm, every=0.0005), mic.play(legit))
    await eventually(
        lambda: metric(node, "hemicycle_audio_packets_in_total", outcome="flood"),
        message="the flooding microphone's packets to be counted as a flood",
    )
    await mic.play(tagged(opus_tone(440, 30), tag=1))  # the floor is back with the chair
    heard = await ear.wait(0, 20, timeout(5))
    assert marker(heard[-1].payload)[0] == 1
    for c in (flood, mic, ear):
        await c.close()
    for c in (chair, bo, ana):
        await c.close()


async def test_leaving_closes_peer_connections_and_frees_ports(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    (chair,) = await people(node, invites, ("Chair", "moderator"))
    before = udp_sockets()
    ana, bo = await people(node, invites, ("Ana", "participant"), ("Bo", "participant"))
    ears = [await listen(ana), await listen(bo)]
    mic = await publish(chair, "floor")
    gauge = "hemicycle_peer_connections"
    assert metric(node, gauge, kind="listen") == 2
    assert metric(node, gauge, kind="publish") == 1
    assert udp_sockets() > before
    for c in (ana, bo):
        await c.close()
    for p in (*ears, mic):
        await p.close()
    await chair.close()
    await eventually(
        lambda: (metric(node, gauge, kind="listen"), metric(node, gauge, kind="publish")),
        until=lambda open_: open_ == (0, 0),
        message="the node to close every listening and publishing peer connection",
    )
    assert udp_sockets() == before, "every UDP socket of the closed peers must be freed"
    room = node.node.feature["audio"].rooms["plenary"]
    assert room.peers == {} and room.publishers == {} and room.sources == {}


@pytest.mark.redis
async def test_across_nodes_through_redis(start_node, invites, redis_url) -> None:  # type: ignore[no-untyped-def]
    import redis.asyncio as aioredis

    a = await start_node(redis_url)
    b = await start_node(redis_url)
    (chair,) = await people(a, invites, ("Chair", "moderator"))
    ana, bo = await people(b, invites, ("Ana", "participant"), ("Bo", "participant"))
    r = aioredis.Redis.from_url(redis_url)
    assert await r.pubsub_channels("hc:*:audio:*") == [], "no listener yet: no subscription"
    ears = [await listen(ana), await listen(bo)]
    channels = await eventually(
        lambda: r.pubsub_channels("hc:*:audio:*"), message="node B to subscribe to audio"
    )
    assert channels == [b"hc:{plenary}:audio:floor"], (
        "node B subscribes only to what its listeners need"
    )
    mic = await publish(chair, "floor")
    sent = tagged(opus_tone(440, 100), tag=1)
    await mic.play(sent)
    for ear in ears:
        heard = await ear.wait(0, 100, timeout(5))
        assert [h.payload for h in heard] == sent
    assert metric(b, "hemicycle_audio_bus_frames_total", direction="in") == 100
    assert metric(a, "hemicycle_audio_bus_frames_total", direction="out") == 100
    assert metric(b, "hemicycle_audio_bus_lost_total") == 0
    assert metric(b, "hemicycle_audio_bus_reordered_total") == 0
    for ear in ears:
        await ear.close()
    for c in (ana, bo):
        await c.close()
    await eventually(
        lambda: r.pubsub_channels("hc:*:audio:*"),
        until=lambda channels: channels == [],
        message="node B to unsubscribe once the last listener is gone",
    )
    await mic.close()
    await chair.close()
    await r.aclose()


def test_media_config_ice_servers() -> None:
    from server.errors import ConfigError
    from server.media.setup import MediaConfig

    assert MediaConfig.from_extra({}).ice_servers == ()
    assert MediaConfig.from_extra({}).rtc_configuration().iceServers == [], (
        "by default the node contacts no STUN server (host candidates: one machine, a LAN)"
    )
    cfg = MediaConfig.from_extra(
        {
            "media": {
                "ice_servers": [
                    {"urls": "stun:stun.example.org:3478"},
                    {"urls": ["turn:turn.example.org"], "username": "u", "credential": "p"},
                ],
                "server_ice_servers": [{"urls": "stun:stun.example.org:3478"}],
            }
        },
        "a.toml",
    )
    assert cfg.ice_servers[0] == {"urls": ["stun:stun.example.org:3478"]}
    assert cfg.ice_servers[1]["credential"] == "p"
    assert cfg.rtc_configuration().iceServers[0].urls == ["stun:stun.example.org:3478"]
    for bad, key in (
        ({"media": []}, "media"),
        ({"media": {"ice_servers": {}}}, "media.ice_servers"),
        ({"media": {"ice_servers": [{"urls": "http://x"}]}}, "media.ice_servers[0].urls"),
        (
            {"media": {"ice_servers": [{"urls": "stun:x", "username": 1}]}},
            "media.ice_servers[0].username",
        ),
    ):
        with pytest.raises(ConfigError) as exc:
            MediaConfig.from_extra(bad, "a.toml")
        assert exc.value.key == key


async def test_ice_servers_reach_the_browser_in_the_welcome(start_node, invites, assembly) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    ice = [{"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "p"}]
    config = dataclasses.replace(assembly, extra={**assembly.extra, "media": {"ice_servers": ice}})
    node = await start_node(config=config)
    (ana,) = await people(node, invites, ("Ana", "participant"))
    assert ana.welcome["assembly"]["media"] == {"ice_servers": ice, "turn": False}
    await ana.close()


async def test_levels_of_live_microphones_go_to_chair_and_booths(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    chair, ana, ivan = await people(
        node,
        invites,
        ("Chair", "moderator"),
        ("Ana", "participant"),
        ("Ivan", "interpreter"),
        Ivan={"booth": "es"},
    )
    mic = await publish(chair, "floor")
    await mic.play(opus_tone(440, 25, amplitude=16000))
    for client in (chair, ivan):
        levels = await client.wait_message(
            lambda m: (
                m["type"] == "ephemeral"
                and m.get("kind") == "levels"
                and chair.me in m["levels"]
                and m["levels"][chair.me]["db"] > -40
            ),
            timeout(3),
        )
        entry = levels["levels"][chair.me]
        assert entry["source"] == "floor" and entry["on_air"] is True
    assert not [m for m in ana.received if m.get("kind") == "levels"], (
        "participants do not get the meters (5 messages a second each)"
    )
    await mic.close()
    for c in (chair, ana, ivan):
        await c.close()


@pytest.mark.redis
async def test_bus_losses_and_late_frames_are_counted(start_node, invites, redis_url) -> None:  # type: ignore[no-untyped-def]
    """Frames of another node's microphone with a gap and a late one, on the real Redis bus."""
    from server.media.kind import AUDIO
    from server.media.relay import Frame

    node = await start_node(redis_url)
    chair, ana = await people(node, invites, ("Chair", "moderator"), ("Ana", "participant"))
    ear = await listen(ana)
    bus = node.node.backends.bus
    packets = tagged(opus_tone(440, 8), tag=5)
    redis = node.node.backends.redis
    floor = AUDIO.bus_channel("plenary", "floor")
    await eventually(  # the node subscribes once Ana listens
        lambda: redis.pubsub_numsub(floor),
        until=lambda numsub: numsub == [(floor.encode(), 1)],
        message="the node's subscription to the floor's bus channel",
    )
    for seq in (1, 2, 3, 6, 7, 5, 8):  # 4 never comes; 5 comes after 7
        frame = Frame("elsewhere.1", chair.me, seq, seq * 960, packets[seq - 1], 30)
        await bus.publish(floor, frame.to_bus())
        await asyncio.sleep(0.02)  # not synchronisation: a microphone's real-time pace
    await bus.publish(floor, b"\x93garbage")
    await eventually(  # the last frame on the bus: every earlier one has been handled
        lambda: metric(node, "hemicycle_audio_bus_frames_total", direction="bad"),
        message="the node to read the garbage frame that follows the others",
    )
    await settled(node, [ear], packets_in=0)
    heard = ear.on(0)
    assert [marker(h.payload)[1] for h in heard] == [0, 1, 2, 5, 6, 7]
    assert metric(node, "hemicycle_audio_bus_lost_total") == 2  # 4 and 5 missing at 6
    assert metric(node, "hemicycle_audio_bus_reordered_total") == 1  # 5, late: dropped
    assert metric(node, "hemicycle_audio_bus_frames_total", direction="bad") == 1
    await ear.close()
    for c in (chair, ana):
        await c.close()
