"""Stage video through real nodes and real aiortc peers: payloads, layers, keyframes, rights."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from server.client import Client
from server.media import vp8

from .audio_helpers import (
    loopback_ice,  # noqa: F401 (fixture)
    people,
)
from .video_helpers import Camera, Eye, publish_camera, starts, view
from .waiting import eventually

pytestmark = pytest.mark.usefixtures("loopback_ice")


def metric(node, name: str, **labels: str) -> float:  # type: ignore[no-untyped-def]
    value = node.node.metrics.registry.get_sample_value(name, labels or None)
    return float(value or 0.0)


def layer_of(camera: Camera, eye: Eye, tile: int) -> list[str]:
    """Which of the camera's layers each frame a tile received came from (by payload)."""
    sent = {s.payload[vp8.parse(s.payload).header :]: s.q for s in camera.sent}
    return [
        sent.get(g.payload[vp8.parse(g.payload).header :], "?")
        for g in eye.on(tile)
        if vp8.parse(g.payload).start
    ]


async def playing(camera: Camera) -> asyncio.Task[None]:
    return asyncio.create_task(camera.play(100_000))


async def close_all(task: asyncio.Task[None], *closing: Any) -> None:
    """Stop the camera's playing, then close cameras, views and clients, in that order."""
    task.cancel()
    for c in closing:
        await c.close()


async def moved_to_h(
    camera: Camera,
    eye: Eye,
    layers: Callable[[Camera, Eye, int], list[str]],
    before: int,
    count: int,
) -> int:
    """Show the camera's high layer on both tiles; once tile 0 has ``count`` high packets
    or frames past its first ``before``, where its first high one is (``layers`` tells
    each one's layer). Every one before it is low, every one from it on high."""
    await eye.show((0, camera.source, "h"), (1, camera.source, "h"))
    await eventually(
        lambda: layers(camera, eye, 0)[before:],
        until=lambda qs: qs.count("h") >= count,
        timeout=15,
        message="tile 0 to move to h",
    )
    got = layers(camera, eye, 0)
    first_h = got.index("h")
    assert set(got[:first_h]) == {"l"} and set(got[first_h:]) == {"h"}, got
    return first_h


async def test_viewer_gets_the_publishers_vp8_bytes_from_a_keyframe(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    chair, ana = await people(node, invites, ("Chair", "moderator"), ("Ana", "participant"))
    camera = await publish_camera(chair)
    assert camera.source == f"{chair.me}:camera"
    task = await playing(camera)
    eye = await view(ana, tiles=2)
    await eye.show((0, camera.source, "h"))
    await eventually(
        lambda: len(starts(eye.on(0))),
        until=lambda n: n >= 40,
        timeout=15,
        message="40 frames on tile 0",
    )
    first = starts(eye.on(0))[0]
    assert first.keyframe and (first.width, first.height) == (1280, 720)
    assert camera.plis["h"] >= 1, "the node asked a keyframe for the new viewer"
    assert set(layer_of(camera, eye, 0)) == {"h"}
    # Bytes past the descriptor are the camera's, in order, none missing.
    got = [g.payload for g in eye.on(0)]
    sent = [s.payload for s in camera.sent if s.q == "h"]
    body = [p[vp8.parse(p).header :] for p in got]
    at = [p[vp8.parse(p).header :] for p in sent].index(body[0])
    assert body == [p[vp8.parse(p).header :] for p in sent[at : at + len(body)]]
    seqs = [g.seq for g in eye.on(0)]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
    assert eye.on(1) == [], "last-N: an empty tile gets nothing"
    await close_all(task, camera, eye, chair, ana)


def latest_sources(client: Client) -> dict[str, list[str]]:
    told = [m for m in client.received if m["type"] == "video.sources"]
    return told[-1]["sources"] if told else {}


async def test_tiles_get_their_quality_and_switch_only_at_keyframes(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    chair, ana = await people(node, invites, ("Chair", "moderator"), ("Ana", "participant"))
    camera = await publish_camera(chair)
    task = await playing(camera)
    await eventually(
        lambda: latest_sources(ana).get(camera.source, []),
        until=lambda qs: sorted(qs) == ["h", "l", "m"],
        message="ana to be told the camera publishes three layers",
    )
    eye = await view(ana, tiles=2)
    await eye.show((0, camera.source, "l"), (1, camera.source, "h"))
    await eventually(
        lambda: (len(starts(eye.on(0))), len(starts(eye.on(1)))),
        until=lambda n: min(n) >= 20,
        timeout=15,
        message="20 frames on each tile",
    )
    assert set(layer_of(camera, eye, 0)) == {"l"}, "a small tile gets the low layer"
    assert set(layer_of(camera, eye, 1)) == {"h"}
    assert (starts(eye.on(0))[0].width, starts(eye.on(1))[0].width) == (320, 1280)
    first_h = await moved_to_h(camera, eye, layer_of, len(starts(eye.on(0))), 10)
    descs = starts(eye.on(0))
    assert descs[first_h].keyframe and descs[first_h].width == 1280, "switched at a keyframe"
    pics = [d.picture_id for d in descs]
    assert all((b - a) & 0x7FFF == 1 for a, b in zip(pics, pics[1:], strict=False)), pics
    seqs = [g.seq for g in eye.on(0)]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
    await close_all(task, camera, eye, chair, ana)


async def test_keyframe_requests_of_joining_viewers_are_merged(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    chair, *viewers = await people(
        node, invites, ("Chair", "moderator"), *((f"V{n}", "participant") for n in range(4))
    )
    camera = await publish_camera(chair)
    task = await playing(camera)
    eyes = [await view(v, tiles=1) for v in viewers]
    plis_before = camera.plis["h"]
    await asyncio.gather(*(eye.show((0, camera.source, "h")) for eye in eyes))
    for eye in eyes:
        await eventually(
            lambda eye=eye: starts(eye.on(0)),
            until=lambda s: s and s[0].keyframe,
            timeout=10,
            message="every viewer to start on a keyframe",
        )
    asked = camera.plis["h"] - plis_before
    assert 1 <= asked <= 2, f"4 joins at once cost {asked} keyframe requests"
    assert metric(node, "hemicycle_video_keyframe_requests_total", outcome="merged") >= 2
    task.cancel()
    await camera.close()
    for eye in eyes:
        await eye.close()
    for c in (chair, *viewers):
        await c.close()


async def test_only_shown_sources_are_sent_and_a_stopped_share_disappears(
    start_node, invites
) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    chair, ana = await people(node, invites, ("Chair", "moderator"), ("Ana", "participant"))
    camera = await publish_camera(chair)
    await chair.command("share.start")  # the room says who shares (stage.py): one at a time
    screen = await publish_camera(chair, "screen", layers=("h",))
    assert screen.source == f"{chair.me}:screen"
    tasks = [await playing(camera), await playing(screen)]
    await eventually(
        lambda: set(latest_sources(ana)),
        until=lambda s: s == {camera.source, screen.source},
        message="both sources announced",
    )
    eye = await view(ana, tiles=2)
    await eye.show((0, screen.source, "l"))  # a screen has one layer: the best flowing
    await eventually(
        lambda: len(starts(eye.on(0))), until=lambda n: n >= 15, message="the screen's frames"
    )
    assert set(layer_of(screen, eye, 0)) == {"h"}, "last-N: the camera is not sent"
    assert eye.on(1) == []
    assert (await chair.rpc("video.close", pc="screen"))["ok"]
    await eventually(
        lambda: set(latest_sources(ana)),
        until=lambda s: s == {camera.source},
        message="the stopped share to disappear from the sources",
    )
    count = len(eye.on(0))
    await camera.play(15)  # time passes; the stopped screen sends nothing through
    assert len(eye.on(0)) == count
    for t in tasks:
        t.cancel()
    await camera.close()
    await screen.close()
    await eye.close()
    for c in (chair, ana):
        await c.close()


async def test_publishing_needs_the_stage(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    chair, bo = await people(node, invites, ("Chair", "moderator"), ("Bo", "participant"))
    refused = await publish_camera(bo, expect_ok=False)
    assert refused.reply["code"] == "not_on_stage"
    await chair.command("floor.grant", {"pid": bo.me})
    camera = await publish_camera(bo)
    await camera.play(3)
    await chair.command("floor.revoke", {"pid": bo.me})
    closed = await bo.wait_message(lambda m: m["type"] == "video.closed")
    assert closed["code"] == "not_on_stage" and closed["pc"] == "camera"
    await eventually(lambda: latest_sources(chair), until=lambda s: not s, message="no source")
    await camera.close()
    for c in (chair, bo):
        await c.close()


async def test_bad_offers_are_refused_with_codes(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    (chair,) = await people(node, invites, ("Chair", "moderator"))
    vp9 = await publish_camera(
        chair,
        expect_ok=False,
        munge=lambda sdp: sdp.replace("VP8/90000", "VP9/90000").replace("H264/90000", "AV1/90000"),
    )
    assert vp9.reply["code"] == "unsupported_codec"
    two = await publish_camera(
        chair, expect_ok=False, munge=lambda sdp: sdp + sdp[sdp.index("m=video") :]
    )
    assert two.reply["code"] == "too_many_tracks"
    rid = await publish_camera(chair, layers=("l", "x"), expect_ok=False)
    assert rid.reply["code"] == "bad_simulcast"
    bad = await chair.rpc("video.offer", purpose="publish", source="window", sdp="v=0")
    assert bad["code"] == "bad_args"
    await chair.close()


async def test_bad_views_are_refused_with_codes(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    (ana,) = await people(node, invites, ("Ana", "participant"))
    assert (await ana.rpc("video.show", slots=[]))["code"] == "not_viewing"
    with pytest.raises(AssertionError, match="too_many_tracks"):
        await view(ana, tiles=10)
    eye = await view(ana, tiles=1)
    for slots in (
        [{"slot": 1, "source": "x:camera"}],
        [{"slot": 0, "source": "x:camera", "quality": "uhd"}],
        [{"slot": 0, "source": "x:camera"}, {"slot": 0, "source": "y:camera"}],
        "all",
    ):
        assert (await ana.rpc("video.show", slots=slots))["code"] == "bad_args"
    await eye.close()
    await ana.close()


async def test_over_the_cap_and_flooding_are_dropped_and_counted(
    start_node, invites, assembly
) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    small = replace(
        assembly,
        extra={**assembly.extra, "video": {"max_width": 640, "max_height": 360, "max_packets": 60}},
    )
    node = await start_node(config=small)
    (chair,) = await people(node, invites, ("Chair", "moderator"))
    camera = await publish_camera(chair)
    await camera.play(3)
    closed = await chair.wait_message(lambda m: m["type"] == "video.closed")
    assert closed["code"] == "over_cap"
    assert metric(node, "hemicycle_video_packets_in_total", outcome="too_large") >= 1
    await camera.close()
    low = await publish_camera(chair, layers=("l",))
    for _ in range(300):  # 300 packets at once: far more than the 60/s this room allows
        await low.send_frame()
    await eventually(
        lambda: metric(node, "hemicycle_video_packets_in_total", outcome="flood"),
        until=lambda n: n > 0,
        message="flooding to be counted",
    )
    await low.close()
    await chair.close()


async def test_an_h264_camera_over_the_cap_is_closed_like_a_vp8_one(
    start_node, invites, assembly
) -> None:  # type: ignore[no-untyped-def]
    """The size of an H.264 picture is in its SPS (the STAP-A ahead of each IDR): a 1280×720
    layer closes the publisher in a 640×360 room; 640×360 itself (22.5 macroblock rows,
    coded as 368 and cropped) and 320×180 pass."""
    from dataclasses import replace

    small = replace(
        assembly, extra={**assembly.extra, "video": {"max_width": 640, "max_height": 360}}
    )
    node = await start_node(config=small)
    (chair,) = await people(node, invites, ("Chair", "moderator"))
    camera = await publish_camera(chair, codec="h264")
    await camera.play(3)
    closed = await chair.wait_message(lambda m: m["type"] == "video.closed")
    assert closed["code"] == "over_cap" and "1280x720" in closed["message"]
    assert metric(node, "hemicycle_video_packets_in_total", outcome="too_large") >= 1
    await camera.close()
    forwarded = metric(node, "hemicycle_video_packets_in_total", outcome="forwarded")
    fits = await publish_camera(chair, layers=("l", "m"), codec="h264")
    await fits.play(40)
    await eventually(
        lambda: metric(node, "hemicycle_video_packets_in_total", outcome="forwarded"),
        until=lambda n: n - forwarded >= len(fits.sent),
        message="every packet of the cameras within the cap to be forwarded",
    )
    assert not fits.stopped
    assert [m for m in chair.received if m["type"] == "video.closed"] == [closed]
    assert metric(node, "hemicycle_video_packets_in_total", outcome="malformed") == 0
    await fits.close()
    await chair.close()


def video_room(node):  # type: ignore[no-untyped-def]
    return node.node.feature["video"].rooms["plenary"]


async def test_video_crosses_nodes_on_redis_only_in_the_layers_needed(
    start_node, redis_url, invites
) -> None:  # type: ignore[no-untyped-def]
    a = await start_node(redis_url, name="a")
    b = await start_node(redis_url, name="b")
    (chair,) = await people(a, invites, ("Chair", "moderator"))
    (ana,) = await people(b, invites, ("Ana", "participant"))
    await eventually(
        lambda: ana.state["core"]["people"].get(chair.me), message="b to fold a's join"
    )
    camera = await publish_camera(chair)
    task = await playing(camera)
    await eventually(
        lambda: sorted(latest_sources(ana).get(camera.source, [])),
        until=lambda qs: qs == ["h", "l", "m"],
        message="node b to tell ana of the camera on node a, with its layers",
    )
    eye = await view(ana, tiles=1)
    await eye.show((0, camera.source, "l"))
    await eventually(
        lambda: len(starts(eye.on(0))), until=lambda n: n >= 20, timeout=15, message="frames on b"
    )
    assert starts(eye.on(0))[0].keyframe, "the keyframe request crossed to node a"
    assert set(layer_of(camera, eye, 0)) == {"l"}
    assert video_room(a).needed == {f"{camera.source}:l"}, "only the layer b needs crosses"
    assert metric(b, "hemicycle_video_bus_frames_total", direction="in") >= 20
    got = [g.payload[vp8.parse(g.payload).header :] for g in eye.on(0)]
    sent = [s.payload[vp8.parse(s.payload).header :] for s in camera.sent if s.q == "l"]
    at = sent.index(got[0])
    assert got == sent[at : at + len(got)], "b's viewer gets a's camera bytes, none missing"
    assert metric(b, "hemicycle_video_bus_lost_total") == 0
    # The share stops on a: b's people see it go.
    await chair.rpc("video.close", pc="camera")
    await eventually(lambda: latest_sources(ana), until=lambda s: not s, message="gone on b")
    await close_all(task, camera, eye, chair, ana)


@contextlib.contextmanager
def lossy(port: int, percent: int) -> Iterator[None]:
    """Drop ``percent`` % of the UDP datagrams arriving at ``port`` (nftables, input hook:
    a drop on output would only return EPERM to the sender; testing-on-loopback.md)."""
    table = f"hcloss{port}"
    nft = shutil.which("nft")
    if nft is None:
        pytest.fail("nftables is missing: the loss test needs it (apt-get install nftables)")
    subprocess.run([nft, "add", "table", "inet", table], check=True)
    try:
        subprocess.run(
            [nft, "add", "chain", "inet", table, "c", "{ type filter hook input priority 0; }"],
            check=True,
        )
        subprocess.run(
            [nft, "add", "rule", "inet", table, "c", "udp", "dport", str(port)]
            + ["numgen", "random", "mod", "100", "<", str(percent), "drop"],
            check=True,
        )
        yield
    finally:
        subprocess.run([nft, "delete", "table", "inet", table], check=True)


def local_port(pc) -> int:  # type: ignore[no-untyped-def]
    ice = pc.getTransceivers()[0].receiver.transport.transport
    pair = ice._connection._nominated[1]
    return int(pair.protocol.transport.get_extra_info("sockname")[1])


async def test_at_three_percent_loss_a_viewer_gets_every_packet_by_rtx(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    chair, ana = await people(node, invites, ("Chair", "moderator"), ("Ana", "participant"))
    camera = await publish_camera(chair, layers=("l",))
    task = await playing(camera)
    eye = await view(ana, tiles=1)
    await eye.show((0, camera.source, "h"))
    await eventually(lambda: len(eye.on(0)), until=lambda n: n > 0, message="a first packet")
    outlet = video_room(node).peers[ana.you["conn"]].viewer.outlets[0]
    with lossy(local_port(eye.pc), 3):
        await eventually(
            lambda: len(eye.on(0)), until=lambda n: n >= 400, timeout=40, message="400 packets"
        )
    await camera.play(10)  # the last NACKs are answered
    assert outlet.sink.nacked > 0, "packets were lost on the way"
    assert outlet.sink.retransmitted > 0
    first = eye.on(0)[0].seq  # before the loss: every later seq is at or after it
    seqs = {(g.seq - first) & 0xFFFF for g in eye.on(0)}
    missing = set(range(max(seqs) + 1)) - seqs
    assert len(missing) <= 2, f"{len(missing)} packets never arrived (the last NACKs aside)"
    # The outlet re-bases PictureIDs (its own numbering): a retransmission must carry the
    # viewer's PictureID, like the other packets of its frame, not the publisher's.
    assert outlet._st.pic_off, "this viewer's PictureIDs are re-based"
    pictures: dict[int, set[int]] = {}
    for g in sorted(eye.on(0), key=lambda g: (g.seq - first) & 0xFFFF):
        pictures.setdefault(g.ts, set()).add(vp8.parse(g.payload).picture_id or 0)
    assert all(len(p) == 1 for p in pictures.values()), "one PictureID per frame"
    ids = [p.pop() for p in pictures.values()]
    steps = {(b - a) & 0x7FFF for a, b in zip(ids, ids[1:], strict=False)}
    assert steps <= {1, 2, 3}, f"PictureIDs continue (a lost frame aside): steps {steps}"
    await close_all(task, camera, eye, chair, ana)


async def test_a_simulcast_layers_retransmission_is_unwrapped_by_its_repaired_rid(
    start_node, invites
) -> None:  # type: ignore[no-untyped-def]
    """Chromium retransmits a RID layer on an SSRC no SDP line names: the repaired-RID
    extension says which layer; the node learns the pair and forwards the repaired packet."""
    node = await start_node()
    chair, ana = await people(node, invites, ("Chair", "moderator"), ("Ana", "participant"))
    camera = await publish_camera(chair)
    assert camera.rtx_pt, "RTX was negotiated"
    task = await playing(camera)
    eye = await view(ana, tiles=1)
    await eye.show((0, camera.source, "h"))
    await eventually(lambda: len(starts(eye.on(0))), until=lambda n: n >= 5, message="frames")
    camera.lose_next_h = True
    await eventually(lambda: camera.resent, message="the camera to retransmit one packet")
    count = len(eye.on(0))
    await eventually(lambda: len(eye.on(0)), until=lambda n: n >= count + 10, message="more")
    # Seq numbers continue the camera's (offset per tile): a packet the node never got would
    # be a gap the viewer NACKs in vain.
    first = eye.on(0)[0].seq
    seqs = {(g.seq - first) & 0xFFFF for g in eye.on(0)}
    assert set(range(max(seqs) + 1)) - seqs == set(), "the retransmitted packet is missing"
    await close_all(task, camera, eye, chair, ana)


async def test_a_cameras_rtx_padding_is_dropped_as_repeats_not_as_a_flood(
    start_node, invites, assembly
) -> None:  # type: ignore[no-untyped-def]
    """Chromium pads its uplink with RTX copies of packets it already sent. Unwrapped they
    are repeats: counted as such and dropped before the flood limit, so that the camera's
    real packets all pass (no gap a viewer's NACK could not repair) and no viewer gets
    a packet twice."""
    from dataclasses import replace

    budget = replace(assembly, extra={**assembly.extra, "video": {"max_packets": 300}})
    node = await start_node(config=budget)
    chair, ana = await people(node, invites, ("Chair", "moderator"), ("Ana", "participant"))
    camera = await publish_camera(chair)
    camera.padding = 12  # ~360 repeats a second besides ~270 packets: over 300 without the fix
    task = await playing(camera)
    eye = await view(ana, tiles=2)
    await eye.show((0, camera.source, "l"), (1, camera.source, "h"))
    await eventually(
        lambda: min(len(starts(eye.on(0))), len(starts(eye.on(1)))),
        until=lambda n: n >= 60,
        timeout=20,
        message="60 frames on both tiles",
    )
    await asyncio.sleep(0.5)  # the last NACKs are answered
    assert metric(node, "hemicycle_video_packets_in_total", outcome="flood") == 0
    repeated = metric(node, "hemicycle_video_packets_in_total", outcome="repeated")
    assert repeated > 60 * camera.padding / 2, f"{repeated} repeats counted"
    room = video_room(node)
    for tile, q in ((0, "l"), (1, "h")):
        sink = room.peers[ana.you["conn"]].viewer.outlets[tile].sink
        seqs = [g.seq for g in eye.on(tile)]
        # A packet twice is only the node's RTX answer to the viewer's NACK (of a packet
        # the camera had to send again), never padding passed on.
        assert len(seqs) - len(set(seqs)) <= sink.retransmitted, f"tile {tile}: repeats"
        assert set(layer_of(camera, eye, tile)[-20:]) == {q}
    await close_all(task, camera, eye, chair, ana)


def h264_layers(camera: Camera, eye: Eye, tile: int) -> list[str]:
    """Which of the camera's layers each H.264 packet a tile received came from."""
    sent = {s.payload: s.q for s in camera.sent}
    return [sent.get(g.payload, "?") for g in eye.on(tile)]


async def test_an_h264_camera_reaches_viewers_unchanged_and_switches_at_idr(
    start_node, invites
) -> None:  # type: ignore[no-untyped-def]
    """A browser that prefers H.264 is forwarded in H.264: the payloads (STAP-A parameter
    sets, single NAL units, FU-A fragments) arrive as sent, from a keyframe, and a tile
    changes layer only at an IDR picture."""
    node = await start_node()
    chair, ana = await people(node, invites, ("Chair", "moderator"), ("Ana", "participant"))
    camera = await publish_camera(chair, codec="h264")
    assert set(video_room(node).publishers[camera.source].pts.values()) == {"h264"}
    task = await playing(camera)
    eye = await view(ana, tiles=2)
    await eye.show((0, camera.source, "l"), (1, camera.source, "h"))
    await eventually(
        lambda: min(len(eye.on(0)), len(eye.on(1))),
        until=lambda n: n >= 60,
        timeout=15,
        message="60 packets on each tile",
    )
    for tile, q in ((0, "l"), (1, "h")):
        got = eye.on(tile)
        assert vp8.h264_keyframe(got[0].payload), "a tile starts at a keyframe"
        assert set(h264_layers(camera, eye, tile)) == {q}
        # The bytes are the camera's, in order, none missing: one run of what it sent.
        mine = [s for s in camera.sent if s.q == q]
        runs = [
            n
            for n, s in enumerate(mine)
            if s.payload == got[0].payload
            and [m.payload for m in mine[n : n + len(got)]] == [g.payload for g in got]
        ]
        assert runs, f"tile {tile}'s payloads are not a run of the camera's layer {q}"
    first_h = await moved_to_h(camera, eye, h264_layers, len(eye.on(0)), 30)
    assert vp8.h264_keyframe(eye.on(0)[first_h].payload), "switched at an IDR picture"
    seqs = [g.seq for g in eye.on(0)]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
    await close_all(task, camera, eye, chair, ana)
