"""Stage video through real nodes and real aiortc peers: payloads, layers, keyframes, rights."""

from __future__ import annotations

import asyncio

import pytest

from server.client import Client
from server.media import vp8

from .audio_helpers import loopback_ice  # noqa: F401 (fixture)
from .video_helpers import Camera, Eye, publish_camera, starts, view
from .waiting import eventually

pytestmark = pytest.mark.usefixtures("loopback_ice")


async def people(node, invites, *roles: tuple[str, str]) -> list[Client]:  # type: ignore[no-untyped-def]
    return [
        await Client.connect(node.url, invites.mint(room="plenary", role=role, name=name))
        for name, role in roles
    ]


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
    task.cancel()
    await camera.close()
    await eye.close()
    for c in (chair, ana):
        await c.close()
