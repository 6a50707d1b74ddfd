"""Several open microphones on the floor, through a real node and real aiortc peers.

Two speakers talk at once: a listener that asked for three lanes gets each voice, byte for
byte, on its own track (the browser mixes them); a one-track listener still gets one voice
at a time; an interpreter, whose input is the floor, hears the same as a listener.
"""

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
)
from .conftest import timeout
from .waiting import eventually

pytestmark = pytest.mark.usefixtures("loopback_ice")


async def test_two_voices_at_once_reach_a_listener_as_two_tracks(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    chair, bo, ana, cy, ivan = await people(
        node,
        invites,
        ("Chair", "moderator"),
        ("Bo", "participant"),
        ("Ana", "participant"),
        ("Cy", "participant"),
        ("Ivan", "interpreter"),
        Ivan={"booth": "es"},
    )
    await chair.command("floor.grant", {"pid": bo.me})
    await bo.wait_for(lambda s: bo.me in s["core"]["speakers"], timeout(5))
    ana_ear = await listen(ana, tracks=3, lanes=3)
    ivan_ear = await listen(ivan, tracks=3, lanes=3)  # an interpreter's input: the floor
    cy_ear = await listen(cy, tracks=1)  # a one-track listener (an older client)
    chair_mic = await publish(chair, "floor")
    bo_mic = await publish(bo, "floor")
    chair_says = tagged(opus_tone(440, 100), tag=1)
    bo_says = tagged(opus_tone(660, 100), tag=2)
    await asyncio.gather(chair_mic.play(chair_says), bo_mic.play(bo_says))  # overlapping
    await settled(node, [ana_ear, ivan_ear, cy_ear], packets_in=200)

    for ear in (ana_ear, ivan_ear):
        by_track = {i: {tag for tag, _ in ear.markers(i)} for i in range(3)}
        voiced = sorted((tags for tags in by_track.values() if tags), key=min)
        assert voiced == [{1}, {2}], f"each voice on a track of its own: {by_track}"
        for i, tags in by_track.items():
            if tags:
                sent = chair_says if tags == {1} else bo_says
                assert [h.payload for h in ear.on(i)] == sent, "the bytes the speaker sent"
                assert steps(ear.on(i)) == {960}, "each track runs on its own steady clock"
    # One track: one voice at a time (the first speaker's, unless a starved machine made it
    # miss 0.1 s), never both added up; each voice's packets in order.
    one = cy_ear.markers(0)
    assert 90 <= len(one) <= 105, f"one voice at a time, not both: {len(one)} packets"
    for tag in (1, 2):
        n = [k for t, k in one if t == tag]
        assert n == sorted(n)

    await chair_mic.close()
    # The chair hears Bo; Bo hears nobody (the chair's mic is closed, his own is never sent).
    chair_ear = await listen(chair, tracks=3, lanes=3)
    await bo_mic.play(tagged(opus_tone(660, 20), tag=3))
    await settled(node, [ana_ear, ivan_ear, cy_ear, chair_ear], packets_in=220)
    (track,) = [i for i in range(3) if chair_ear.on(i)]  # Bo's lane: he held it all along
    assert [marker(h.payload) for h in chair_ear.on(track)] == [(3, n) for n in range(20)]
    for ear in (ana_ear, ivan_ear, cy_ear, chair_ear):
        await ear.close()
    await bo_mic.close()
    for c in (chair, bo, ana, cy, ivan):
        await c.close()


@pytest.mark.parametrize(
    ("tracks", "lanes", "code"),
    [
        (3, 4, "bad_lanes"),
        (2, 3, "bad_lanes"),
        (4, 3, "bad_lanes"),
        (3, "3", "bad_lanes"),
        (3, True, "bad_lanes"),
        (3, 0, "bad_lanes"),
        (7, 3, "too_many_tracks"),
        (3, 1, "too_many_tracks"),
    ],
)
async def test_bad_lane_requests_are_refused(start_node, invites, tracks, lanes, code) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    (ana,) = await people(node, invites, ("Ana", "participant"))
    with pytest.raises(AssertionError, match=code):
        await listen(ana, tracks=tracks, lanes=lanes)
    media = node.node.feature["audio"].room("plenary")
    assert list(media.signalling.listeners()) == [], "a refused offer sets nothing up"
    value = node.node.metrics.registry.get_sample_value(
        "hemicycle_peer_connections", {"kind": "listen"}
    )
    assert not value
    await ana.close()


async def test_two_voices_on_node_a_reach_node_b_as_two_tracks(
    start_node, invites, redis_url
) -> None:  # type: ignore[no-untyped-def]
    """Frames cross the bus with their level; node B fills its own lanes from them."""
    a, b = await start_node(redis_url), await start_node(redis_url)
    (chair, bo) = await people(a, invites, ("Chair", "moderator"), ("Bo", "participant"))
    (ana,) = await people(b, invites, ("Ana", "participant"))
    await chair.wait_for(lambda s: bo.me in s["core"]["people"], timeout(5))
    await chair.command("floor.grant", {"pid": bo.me})
    await ana.wait_for(lambda s: bo.me in s["core"]["speakers"], timeout(5))
    ear = await listen(ana, tracks=6, lanes=3)  # with the floor-underneath group, unused here
    chair_mic, bo_mic = await publish(chair, "floor"), await publish(bo, "floor")
    chair_says = tagged(opus_tone(440, 60), tag=1)
    bo_says = tagged(opus_tone(660, 60), tag=2)
    await asyncio.gather(chair_mic.play(chair_says), bo_mic.play(bo_says))
    await eventually(
        lambda: sum(len(t) for t in ear.tracks.values()),
        until=lambda n: n >= 120,
        message="node B's listener to hear both voices' 120 packets",
    )
    await settled(b, [ear], packets_in=0)  # and nothing more on its way
    by_track = {i: [h.payload for h in ear.on(i)] for i in range(6) if ear.on(i)}
    assert sorted(by_track.values(), key=lambda p: marker(p[0])[0]) == [chair_says, bo_says], {
        i: {marker(p)[0] for p in ps} for i, ps in by_track.items()
    }
    assert set(by_track) <= {0, 1, 2}, "the floor as what one hears: the first group"
    for p in (ear, chair_mic, bo_mic):
        await p.close()
    for c in (chair, bo, ana):
        await c.close()
