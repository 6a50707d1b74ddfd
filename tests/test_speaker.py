"""The active speaker: the tracker's hysteresis, and a node naming the floor's speaker to its
connections from real aiortc microphones (levels measured from the Opus the peers send)."""

from __future__ import annotations

import asyncio

import pytest

from server.client import Client
from server.media.relay import Frame
from server.media.speaker import GAP, HOLD, MIN_TALK, Tracker

from .audio_helpers import listen, loopback_ice, opus_tone, publish
from .conftest import timeout

LOUD, QUIET = 20, 90


def frames(tracker: Tracker, pid: str, start: float, seconds: float, level: int = LOUD) -> float:
    """Feed ``seconds`` of 20 ms frames of ``pid`` from ``start``; return the end time."""
    t = start
    for n in range(round(seconds / 0.02)):
        t = start + n * 0.02
        tracker.feed(Frame(pid + "-pub", pid, n, n * 960, b"x", level), t)
    return t


def test_the_first_talkspurt_takes_the_stage_after_min_talk() -> None:
    seen: list[str | None] = []
    tracker = Tracker(seen.append)
    frames(tracker, "ana", 0.0, MIN_TALK - 0.1)
    assert seen == [], "shorter than MIN_TALK: a cough, not a speaker"
    frames(tracker, "ana", 1.0, MIN_TALK + 0.1)
    assert seen == ["ana"] and tracker.speaker == "ana"


def test_quiet_frames_count_for_nothing() -> None:
    seen: list[str | None] = []
    tracker = Tracker(seen.append)
    frames(tracker, "ana", 0.0, 2.0, level=QUIET)
    assert seen == [] and tracker.speaker is None


def test_an_interjection_does_not_take_the_stage_but_a_turn_does() -> None:
    seen: list[str | None] = []
    tracker = Tracker(seen.append)
    end = frames(tracker, "ana", 0.0, 2.0)
    # bo speaks over ana for a while: ana is still speaking, so the stage stays hers
    frames(tracker, "bo", 1.0, 0.9)
    assert seen == ["ana"]
    # ana stops; bo speaks: after HOLD of ana's silence, bo takes the stage
    t = frames(tracker, "bo", end + GAP + 0.05, HOLD + 0.2)
    assert seen == ["ana", "bo"], seen
    # silence after bo: the last speaker stays shown
    assert tracker.speaker == "bo"
    frames(tracker, "ana", t + 0.1, 0.2)
    assert tracker.speaker == "bo", "a short answer from ana while bo is quiet is not a turn"


@pytest.mark.usefixtures(loopback_ice.__name__)
async def test_a_node_names_the_floor_speaker_to_its_connections(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    chair = await Client.connect(node.url, invites.mint(room="plenary", role="moderator", name="C"))
    bo = await Client.connect(node.url, invites.mint(room="plenary", role="participant", name="B"))
    ana = await Client.connect(node.url, invites.mint(room="plenary", role="participant", name="A"))
    await chair.command("floor.grant", {"pid": bo.me})
    await bo.wait_for(lambda s: bo.me in s["core"]["speakers"])

    def speaker_is(pid: str):  # type: ignore[no-untyped-def]
        return lambda m: m.get("kind") == "speaker" and m.get("pid") == pid

    ear = await listen(ana)  # the node taps the floor it forwards to its listeners
    mic = await publish(chair, "floor")
    await mic.play(opus_tone(440, 100))  # 2 s of the chair (a loaded machine may stall frames)
    await ana.wait_message(speaker_is(chair.me), timeout(5))
    await asyncio.sleep(HOLD)  # pacing like a person: the chair's silence, not a wait for speed
    bos = await publish(bo, "floor")
    await bos.play(opus_tone(300, 150))  # 3 s of Bo
    await ana.wait_message(speaker_is(bo.me), timeout(5))
    late = await Client.connect(node.url, invites.mint(room="plenary", role="observer", name="L"))
    assert late.welcome["assembly"]["speaker"] == bo.me, "a new connection learns it at once"
    for m in (mic, bos, ear):
        await m.close()
    for c in (chair, bo, ana, late):
        await c.close()
