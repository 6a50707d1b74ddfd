"""The forwarding path without sockets: outlets keep one RTP clock, the floor picks a voice."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from server.audio import FLOOR
from server.media.passthrough import EncodedTrack
from server.media.relay import FLOOR_GONE, FLOOR_HOLD, FloorLanes, Frame, Outlet, Source


def frame(pub: str, seq: int, ts: int, level: int | None = 30, pid: str | None = None) -> Frame:
    return Frame(pub, pid or pub, seq, ts & 0xFFFFFFFF, bytes([seq % 256]), level)


def queued(track: EncodedTrack) -> list[tuple[bytes, int]]:
    return list(track._queue)


def test_bus_frame_round_trip_and_garbage() -> None:
    f = frame("c1.1", 7, 123456, level=12, pid="ana")
    g = Frame.from_bus(f.to_bus())
    assert (g.pub, g.pid, g.seq, g.ts, g.payload, g.level) == (
        "c1.1",
        "ana",
        7,
        123456,
        f.payload,
        12,
    )
    import pytest

    from server.protocol import pack

    for bad in (pack([1, 2]), pack(["x", 1, b"", "p", "q", None]), b"\xc1"):
        with pytest.raises(Exception):  # noqa: B017 (any decode error; the caller counts it)
            Frame.from_bus(bad)


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(1, 5), st.floats(0.0, 2.0)),
        min_size=1,
        max_size=60,
    ),
    st.integers(0, 2**32 - 1),
)
def test_outlet_clock_is_monotonic_across_switches(
    script: list[tuple[str, int, float]], start: int
) -> None:
    """Whatever microphones feed it, the timestamps a listener gets only move forward."""
    track = EncodedTrack(limit=1000)
    outlet = Outlet("listener", track)
    ts = {"a": start, "b": start * 7, "c": 2**32 - 960}
    now = 0.0
    for seq, (pub, frames, gap) in enumerate(script):
        now += gap
        ts[pub] = (ts[pub] + 960 * frames) & 0xFFFFFFFF
        outlet.feed(frame(pub, seq, ts[pub]), now)
    out = [t for _, t in queued(track)]
    assert out == sorted(out) and len(set(out)) == len(out)
    assert all(b - a >= 960 for a, b in zip(out, out[1:], strict=False))


def test_outlet_keeps_spacing_and_wall_time_on_switch() -> None:
    track = EncodedTrack(limit=100)
    outlet = Outlet("me", track)
    for n in range(3):
        outlet.feed(frame("a", n, 5000 + 960 * n), 1.0 + 0.02 * n)
    outlet.feed(frame("b", 0, 99), 1.5)  # another mic, 460 ms later
    outlet.feed(frame("b", 1, 99 + 960), 1.52)
    outlet.feed(frame("b", 1, 99 + 960), 1.52)  # repeated: dropped
    outlet.feed(frame("b", 0, 99), 1.53)  # late: dropped
    outlet.feed(frame("x", 0, 0, pid="me"), 1.54)  # my own voice: dropped
    out = [t for _, t in queued(track)]
    assert out[1] - out[0] == 960 and out[2] - out[1] == 960
    assert out[3] - out[2] == 960 * 23, "the gap on the wire matches the time that passed"
    assert len(out) == 5


def test_floor_forwards_one_voice_and_hands_over_on_silence() -> None:
    floor = Source(FLOOR)
    track = EncodedTrack(limit=1000)
    floor.add(Outlet("listener", track))
    t, sent = 0.0, []
    for n in range(60):  # the chair speaks for 10 frames, then the speaker (mic open all along)
        chair, spk = (20, 90) if n < 10 else (90, 25)
        for pub, level in (("chair", chair), ("spk", spk)):
            f = Frame(pub, pub, n, n * 960, f"{pub}{n}".encode(), level)
            if floor.push(f, t):
                sent.append(f.payload)
        t += 0.02
    assert [p for p, _ in queued(track)] == sent
    who = [p.decode().rstrip("0123456789") for p in sent]
    switch = who.index("spk")
    assert who[:switch] == ["chair"] * switch and set(who[switch:]) == {"spk"}
    quiet_frames = switch - 10
    assert FLOOR_HOLD / 0.02 <= quiet_frames <= FLOOR_HOLD / 0.02 + 2, (
        "the chair keeps the floor through FLOOR_HOLD of quiet, then the speaker has it"
    )


def test_floor_moves_on_when_the_voice_stops_sending() -> None:
    floor = Source(FLOOR)
    track = EncodedTrack(limit=1000)
    floor.add(Outlet("listener", track))
    floor.push(frame("chair", 0, 0, level=20), 0.0)
    assert floor.push(frame("spk", 0, 0, level=20), 0.01) == 0
    assert floor.push(frame("spk", 1, 960, level=20), 0.02 + FLOOR_GONE) == 1


def test_channels_forward_everything_they_are_given() -> None:
    es = Source("es")
    taps: list[Frame] = []
    es.taps.append(lambda f, now: taps.append(f))
    assert not es.idle
    es.push(frame("iv", 0, 0, level=127), 0.0)
    es.push(frame("ana", 0, 0, level=127), 0.0)
    assert len(taps) == 2


def lanes_of(floor: Source, script: list[tuple[float, str, int]]) -> dict[int, list[str]]:
    """Push ``(time, pub, level)`` frames into ``floor``; who each 3-lane outlet heard."""
    tracks = {lane: EncodedTrack(limit=10_000) for lane in range(3)}
    for lane, track in tracks.items():
        floor.add(Outlet("listener", track, lane, 3))
    for n, (t, pub, level) in enumerate(script):
        floor.push(Frame(pub, pub, n, n * 960, pub.encode(), level), t)
    return {lane: [p.decode() for p, _ in queued(track)] for lane, track in tracks.items()}


def test_three_lanes_carry_overlapping_voices_each_on_its_own_track() -> None:
    floor = Source(FLOOR)
    one = EncodedTrack(limit=10_000)
    floor.add(Outlet("old", one))  # a one-track listener on the same floor
    script = []
    for n in range(50):  # the chair and a panelist speak at once; a third mic is open, quiet
        t = n * 0.02
        script += [(t, "chair", 20), (t, "pan", 25), (t, "open", 120)]
    heard = lanes_of(floor, script)
    assert heard[0] == ["chair"] * 50 and heard[1] == ["pan"] * 50 and heard[2] == ["open"] * 50
    assert {p for p, _ in queued(one)} == {b"chair"}, "one track: still one voice at a time"


def test_a_fourth_voice_takes_the_lane_of_the_one_quiet_longest() -> None:
    floor = Source(FLOOR)
    script = []
    for n in range(80):
        t = n * 0.02
        script += [(t, "a", 20), (t, "b", 20), (t, "c", 20 if n < 10 else 110)]
        if n >= 5:
            script.append((t, "d", 20))  # a fourth speaker: waits until c has been quiet
    heard = lanes_of(floor, script)
    assert set(heard[0]) == {"a"} and set(heard[1]) == {"b"}, "speaking voices keep their lane"
    assert heard[2][:10] == ["c"] * 10
    switch = heard[2].index("d")
    assert set(heard[2][switch:]) == {"d"}
    quiet_frames = switch - 10
    assert FLOOR_HOLD / 0.02 <= quiet_frames <= FLOOR_HOLD / 0.02 + 2


def test_a_microphone_in_dtx_silence_never_holds_a_speaker_off_the_floor() -> None:
    """With DTX a silent microphone sends one comfort-noise packet every 400 ms and takes a
    lane free since ``FLOOR_GONE`` (a speaker pausing): when the speaker goes on 20 ms after
    that packet, their voice is forwarded from its first frame (the onset is not cut)."""
    for k in (1, 3):
        lanes = FloorLanes(k)
        others = "xyz"[: k - 1]  # the other lanes held by speakers who go on talking
        seq = 0

        def send(pub: str, t: float, level: int, lanes: FloorLanes = lanes) -> int | None:
            nonlocal seq
            seq += 1
            return lanes.lane(Frame(pub, pub, seq, seq * 960, pub.encode(), level), t)

        for n in range(10):  # the speaker talks for 0.2 s, then pauses
            for pub in (*others, "v"):
                send(pub, n * 0.02, 20)
        send("cn", 0.5, 127)  # the silent microphone's comfort noise, 0.3 s into the pause
        for n in range(10):  # the speaker goes on at 0.52 s
            for pub in others:
                send(pub, 0.52 + n * 0.02, 20)
            lane = send("v", 0.52 + n * 0.02, 20)
            assert lane is not None, f"{k} lanes: the voice's frame {n} after the pause was dropped"


@given(
    st.lists(
        st.tuples(
            st.floats(0.0, 0.3), st.sampled_from("abcde"), st.sampled_from([None, 10, 60, 127])
        ),
        max_size=200,
    ),
    st.integers(1, 3),
)
def test_lanes_never_mix_voices_nor_exceed_their_count(
    script: list[tuple[float, str, int | None]], k: int
) -> None:
    """At any moment at most ``k`` microphones hold a lane, each lane one microphone, a
    frame is forwarded on at most one lane, and a holder keeps its lane while it sends."""
    lanes = FloorLanes(k)
    now = 0.0
    for n, (gap, pub, level) in enumerate(script):
        now += gap
        before = lanes.holders()
        lane = lanes.lane(Frame(pub, pub, n, 0, b"x", level), now)
        after = lanes.holders()
        assert len(after) == k
        assert len({h for h in after if h}) == len([h for h in after if h]), "one lane each"
        if pub in before:
            assert lane == before.index(pub), "a microphone that sends keeps its lane"
        if lane is not None:
            assert after[lane] == pub
        else:
            assert after == before, "a frame not forwarded changes nothing"


def test_a_channel_has_one_voice_on_lane_zero() -> None:
    es = Source("es")
    tracks = [EncodedTrack(limit=100) for _ in range(3)]
    for lane, track in enumerate(tracks):
        es.add(Outlet("listener", track, lane, 3))
    assert es.push(frame("iv", 0, 0), 0.0) == 1
    assert [len(queued(t)) for t in tracks] == [1, 0, 0]


def test_an_outlet_lane_is_checked() -> None:
    import pytest

    for lane, lanes in ((1, 1), (0, 4), (-1, 2)):
        with pytest.raises(ValueError):
            Outlet("x", EncodedTrack(limit=1), lane, lanes)
