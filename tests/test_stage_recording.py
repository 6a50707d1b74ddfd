"""Recording the stage: a camera and the floor's voice into WebM by remuxing, read back with PyAV.

A real node, a real aiortc camera sending pre-encoded VP8 (three simulcast layers) and a
real microphone on the floor; the chair starts and stops the recording with the ordinary
commands. The file is read while it grows and after: VP8 and Opus tracks, the frames are
the camera's own bytes of its best layer (so nothing was re-encoded), timestamps only move
forward, and no encoder was created or called while recording.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiortc.codecs.opus
import aiortc.codecs.vpx
import av
import httpx
import pytest

from server.client import Client
from server.media import h264
from server.media.oggopus import SILENCE
from server.media.webm import keyframe_size

from .audio_helpers import loopback_ice, opus_tone, publish, tagged  # noqa: F401 (fixture)
from .conftest import timeout
from .video_helpers import LAYER_BITS, LAYER_SIZES, h264_frames, publish_camera, vp8_frames
from .waiting import eventually

pytestmark = pytest.mark.usefixtures("loopback_ice")


def demuxed(path: Path) -> dict[str, list[Any]]:
    """``{"vp8": [packets], "opus": [packets]}`` of a WebM file (read while it may grow)."""
    out: dict[str, list[Any]] = {}
    with av.open(str(path)) as c:
        names = {s.index: s.codec_context.name for s in c.streams}
        for p in c.demux():
            if p.size:
                out.setdefault(names[p.stream.index], []).append(
                    (bytes(p), p.pts, p.dts, p.is_keyframe)
                )
    return out


def lengths_to_nals(frame: bytes) -> list[bytes]:
    """The NAL units of a Matroska H.264 frame: each behind a four-byte length (avcC with
    lengthSizeMinusOne = 3, as the track's CodecPrivate says)."""
    nals, at = [], 0
    while at < len(frame):
        size = int.from_bytes(frame[at : at + 4], "big")
        nals.append(frame[at + 4 : at + 4 + size])
        at += 4 + size
    assert at == len(frame), "lengths cover the frame exactly"
    return nals


def sent_nals(payloads: tuple[bytes, ...]) -> list[bytes]:
    """The NAL units of one frame's RTP payloads, byte for byte (the four-byte start codes
    are the ones ``annex_b`` wrote; a NAL unit never holds one)."""
    return b"".join(h264.annex_b(p) for p in payloads).split(h264.START_CODE)[1:]


def frames_in(path: Path, codec: str = "vp8") -> int:
    try:
        return len(demuxed(path).get(codec, []))
    except (av.FFmpegError, OSError):
        return 0  # not started yet, or caught mid-write


def watch_encoders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every encoder created through PyAV's ``CodecContext.create`` or called in aiortc's
    Opus and VP8 encoders (``encode``: pictures or samples in) from now on, by name."""
    made: list[str] = []
    real = av.CodecContext

    class Watched:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        @staticmethod
        def create(codec: Any, mode: str | None = None, *a: Any, **kw: Any) -> Any:
            if mode == "w":
                made.append(f"av:{codec}")
            return real.create(codec, mode, *a, **kw)

    monkeypatch.setattr(av, "CodecContext", Watched())
    for cls in (aiortc.codecs.vpx.Vp8Encoder, aiortc.codecs.opus.OpusEncoder):
        for method in ("encode",):  # not ``pack``: the test's own peers packetize with it
            original = getattr(cls, method)

            def called(self: Any, *a: Any, _o: Any = original, _n: str = cls.__name__) -> Any:
                made.append(_n)
                return _o(self, *a)

            monkeypatch.setattr(cls, method, called)
    return made


async def test_the_stage_is_recorded_by_remuxing(
    start_node, invites, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    # Everything the peers send is encoded before the watch starts (and cached).
    for q in LAYER_SIZES:
        vp8_frames(*LAYER_SIZES[q], 60, gop=30, bitrate=LAYER_BITS[q])
    voice = tagged(opus_tone(440, 400), tag=1)
    node = await start_node(settings={"recordings": str(tmp_path)})
    token = invites.mint(room="plenary", role="moderator", name="Chair")
    chair = await Client.connect(node.url, token)
    camera = await publish_camera(chair)
    mic = await publish(chair, "floor")
    watch = watch_encoders(monkeypatch)
    playing = [
        asyncio.create_task(camera.play(100_000)),
        asyncio.create_task(mic.play(voice)),
    ]

    await chair.command("recording.start")
    rec = await chair.wait_for(lambda s: s["audio"]["recording"], timeout(5))
    path = tmp_path / "plenary" / rec["id"] / "stage.webm"
    early = await eventually(
        lambda: frames_in(path),
        until=lambda n: n >= 15,
        timeout=15,
        message="the stage file to hold 15 frames while it is being written",
    )
    await eventually(
        lambda: frames_in(path),
        until=lambda n: n >= early + 30,
        timeout=15,
        message="the stage file to keep growing",
    )
    stage = node.node.feature["stage_recording"].recorders["plenary"][1].stages["vp8"]
    assert stage.vstream.codec_context is None, "the video track has no codec at all"
    assert not stage.astream.codec_context.is_open, "the audio track's codec is never opened"
    await chair.command("recording.stop")
    await chair.wait_for(lambda s: s["audio"]["recording"] is None, timeout(5))
    for task in playing:
        task.cancel()

    got = demuxed(path)
    assert set(got) == {"vp8", "opus"}, "a VP8 track and an Opus track"
    video, audio = got["vp8"], got["opus"]
    assert len(video) > early
    best = {data for data, _ in vp8_frames(*LAYER_SIZES["h"], 60, gop=30, bitrate=LAYER_BITS["h"])}
    assert all(data in best for data, *_ in video), "the camera's own frames of its best layer"
    assert video[0][3] and keyframe_size(video[0][0]) == (1280, 720), "it starts at a keyframe"
    for packets in (video, audio):
        dts = [p[2] for p in packets]
        assert all(a < b for a, b in zip(dts, dts[1:], strict=False)), "timestamps move forward"
    spoken = [data for data, *_ in audio if data != SILENCE]
    assert spoken and set(spoken) <= set(voice), "the floor's Opus packets, as sent"
    assert watch == [], f"no encoder while recording: {watch}"
    await camera.close()
    await mic.close()

    async with httpx.AsyncClient(base_url=node.url) as http:
        auth = {"Authorization": f"Bearer {token}"}
        (entry,) = (await http.get("/api/recordings", headers=auth)).json()["recordings"]
        assert "stage.webm" in [f["name"] for f in entry["files"]]
        r = await http.get(f"/api/recordings/plenary/{rec['id']}/stage.webm", headers=auth)
        assert r.status_code == 200 and r.headers["content-type"] == "video/webm"
    await chair.close()


async def test_an_h264_stage_is_recorded_into_matroska_by_remuxing(
    start_node, invites, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """A camera that sends H.264 (three simulcast layers of libx264 output) is recorded into
    ``stage.mkv``: an H.264 track of its best layer whose frames are the camera's NAL units,
    in order, each one decodable, beside the floor's Opus; no encoder was made."""
    for q in LAYER_SIZES:
        h264_frames(*LAYER_SIZES[q], 60, gop=30)
    voice = tagged(opus_tone(440, 400), tag=1)
    node = await start_node(settings={"recordings": str(tmp_path)})
    token = invites.mint(room="plenary", role="moderator", name="Chair")
    chair = await Client.connect(node.url, token)
    camera = await publish_camera(chair, codec="h264")
    mic = await publish(chair, "floor")
    watch = watch_encoders(monkeypatch)
    playing = [
        asyncio.create_task(camera.play(100_000)),
        asyncio.create_task(mic.play(voice)),
    ]
    sent_before = len(camera.sent)
    await chair.command("recording.start")
    rec = await chair.wait_for(lambda s: s["audio"]["recording"], timeout(5))
    path = tmp_path / "plenary" / rec["id"] / "stage.mkv"
    early = await eventually(
        lambda: frames_in(path, "h264"),
        until=lambda n: n >= 15,
        timeout=15,
        message="the stage file to hold 15 H.264 frames while it is being written",
    )
    await eventually(
        lambda: frames_in(path, "h264"),
        until=lambda n: n >= early + 30,
        timeout=15,
        message="the stage file to keep growing",
    )
    stage = node.node.feature["stage_recording"].recorders["plenary"][1].stages["h264"]
    assert stage.vstream.codec_context is None, "the video track has no codec at all"
    assert not stage.astream.codec_context.is_open, "the audio track's codec is never opened"
    await chair.command("recording.stop")
    await chair.wait_for(lambda s: s["audio"]["recording"] is None, timeout(5))
    for task in playing:
        task.cancel()
    assert watch == [], f"no encoder while recording: {watch}"

    got = demuxed(path)
    assert set(got) == {"h264", "opus"}, "an H.264 track and an Opus track"
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        assert (v.width, v.height) == (1280, 720), "the best layer's size, from its SPS"
        assert (v.codec_context.extradata or b"\0")[0] == 1, "CodecPrivate: an avcC"
        decoded = [(f.width, f.height) for f in c.decode(video=0)]
    video = [lengths_to_nals(data) for data, *_ in got["h264"]]
    assert decoded == [(1280, 720)] * len(video), "FFmpeg decodes every frame"
    assert got["h264"][0][3], "it starts at a keyframe"
    # What the camera sent of its best layer since the start, frame by frame (one RTP
    # timestamp each): the file holds these frames' NAL units, in order, about all of them.
    frames: dict[int, list[bytes]] = {}
    for s in camera.sent[sent_before:]:
        if s.q == "h":
            frames.setdefault(s.ts, []).append(s.payload)
    sent = [sent_nals(tuple(payloads)) for payloads in frames.values()]
    at, positions = 0, []
    for frame in video:
        while at < len(sent) and sent[at] != frame:
            at += 1
        assert at < len(sent), "every recorded frame is one the camera sent, in order"
        positions.append(at)
        at += 1
    span = positions[-1] - positions[0] + 1
    assert len(video) >= 0.9 * span, f"{len(video)} frames recorded of {span} sent"
    for packets in (got["h264"], got["opus"]):
        dts = [p[2] for p in packets]
        assert all(a < b for a, b in zip(dts, dts[1:], strict=False)), "timestamps move forward"
    spoken = [data for data, *_ in got["opus"] if data != SILENCE]
    assert spoken and set(spoken) <= set(voice), "the floor's Opus packets, as sent"
    assert not path.with_name("stage.webm").exists(), "no VP8 picture, no WebM file"
    await camera.close()
    await mic.close()

    async with httpx.AsyncClient(base_url=node.url) as http:
        auth = {"Authorization": f"Bearer {token}"}
        (entry,) = (await http.get("/api/recordings", headers=auth)).json()["recordings"]
        assert "stage.mkv" in [f["name"] for f in entry["files"]]
        r = await http.get(f"/api/recordings/plenary/{rec['id']}/stage.mkv", headers=auth)
        assert r.status_code == 200 and r.headers["content-type"] == "video/matroska"
        assert r.content == path.read_bytes()
    await chair.close()


def frame_sizes(path: Path) -> list[tuple[int, int]]:
    """The size of each run of pictures in a WebM file, from the keyframes that start them."""
    runs: list[tuple[int, int]] = []
    for data, *_ in demuxed(path).get("vp8", []):
        size = keyframe_size(data)
        if size is not None and (not runs or runs[-1] != size):
            runs.append(size)
    return runs


async def test_the_stage_follows_the_speaker_then_a_shared_screen(
    start_node, invites, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """The chair speaks (their camera, 1280×720), then Bo (his, 320×180), then the chair
    shares a screen (640×360): the stage file switches each time, at a keyframe."""
    for q in LAYER_SIZES:
        vp8_frames(*LAYER_SIZES[q], 60, gop=30, bitrate=LAYER_BITS[q])
    node = await start_node(settings={"recordings": str(tmp_path)})
    chair = await Client.connect(
        node.url, invites.mint(room="plenary", role="moderator", name="Chair")
    )
    bo = await Client.connect(node.url, invites.mint(room="plenary", role="participant", name="Bo"))
    await chair.wait_for(lambda s: bo.me in s["core"]["people"], timeout(5))
    await chair.command("floor.grant", {"pid": bo.me})
    await bo.wait_for(lambda s: bo.me in s["core"]["speakers"], timeout(5))
    chair_cam = await publish_camera(chair)
    bo_cam = await publish_camera(bo, layers=("l",))
    chair_mic, bo_mic = await publish(chair, "floor"), await publish(bo, "floor")
    tasks = [asyncio.create_task(c.play(100_000)) for c in (chair_cam, bo_cam)]
    voice = tagged(opus_tone(440, 50), tag=1)
    await chair.command("recording.start")
    rec = await chair.wait_for(lambda s: s["audio"]["recording"], timeout(5))
    path = tmp_path / "plenary" / rec["id"] / "stage.webm"

    async def speak_until(mic: Any, sizes: list[tuple[int, int]]) -> None:
        """``mic`` speaks until the stage file's runs of pictures are ``sizes``."""

        async def check() -> list[tuple[int, int]]:
            await mic.play(voice[:10])
            try:
                return frame_sizes(path)
            except (av.FFmpegError, OSError):
                return []

        await eventually(
            check,
            until=lambda runs: runs == sizes,
            timeout=40,
            message=f"the stage file to show {sizes}",
        )

    await speak_until(chair_mic, [(1280, 720)])
    await speak_until(bo_mic, [(1280, 720), (320, 180)])  # the chair is quiet: Bo's camera
    await chair.command("share.start")  # the room says who shares (stage.py)
    screen = await publish_camera(chair, "screen", layers=("m",))
    tasks.append(asyncio.create_task(screen.play(100_000)))
    await speak_until(bo_mic, [(1280, 720), (320, 180), (640, 360)])  # a screen goes first
    await chair.command("recording.stop")
    await chair.wait_for(lambda s: s["audio"]["recording"] is None, timeout(5))
    assert frame_sizes(path) == [(1280, 720), (320, 180), (640, 360)]
    dts = [p[2] for p in demuxed(path)["vp8"]]
    assert all(a < b for a, b in zip(dts, dts[1:], strict=False))
    for task in tasks:
        task.cancel()
    for peer in (chair_cam, bo_cam, screen, chair_mic, bo_mic):
        await peer.close()
    for c in (chair, bo):
        await c.close()


async def test_a_vp8_and_an_h264_camera_go_to_their_own_files(
    start_node, invites, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """The chair (VP8, 1280×720) speaks, then Bo (H.264, 320×180): the chair's picture is in
    ``stage.webm``, Bo's in ``stage.mkv``, each file started at a keyframe of its own codec."""
    vp8_frames(*LAYER_SIZES["h"], 60, gop=30, bitrate=LAYER_BITS["h"])
    h264_frames(*LAYER_SIZES["l"], 60, gop=30)
    node = await start_node(settings={"recordings": str(tmp_path)})
    chair = await Client.connect(
        node.url, invites.mint(room="plenary", role="moderator", name="Chair")
    )
    bo = await Client.connect(node.url, invites.mint(room="plenary", role="participant", name="Bo"))
    await chair.wait_for(lambda s: bo.me in s["core"]["people"], timeout(5))
    await chair.command("floor.grant", {"pid": bo.me})
    await bo.wait_for(lambda s: bo.me in s["core"]["speakers"], timeout(5))
    chair_cam = await publish_camera(chair, layers=("h",))
    bo_cam = await publish_camera(bo, layers=("l",), codec="h264")
    chair_mic, bo_mic = await publish(chair, "floor"), await publish(bo, "floor")
    tasks = [asyncio.create_task(c.play(100_000)) for c in (chair_cam, bo_cam)]
    voice = tagged(opus_tone(440, 50), tag=1)
    await chair.command("recording.start")
    rec = await chair.wait_for(lambda s: s["audio"]["recording"], timeout(5))
    webm = tmp_path / "plenary" / rec["id"] / "stage.webm"
    mkv = webm.with_name("stage.mkv")

    async def speak_until(mic: Any, path: Path, codec: str) -> None:
        async def check() -> int:
            await mic.play(voice[:10])
            return frames_in(path, codec)

        await eventually(
            check, until=lambda n: n >= 10, timeout=40, message=f"10 frames in {path.name}"
        )

    await speak_until(chair_mic, webm, "vp8")
    await speak_until(bo_mic, mkv, "h264")
    await chair.command("recording.stop")
    await chair.wait_for(lambda s: s["audio"]["recording"] is None, timeout(5))
    for task in tasks:
        task.cancel()
    chair_frames = {
        d for d, _ in vp8_frames(*LAYER_SIZES["h"], 60, gop=30, bitrate=LAYER_BITS["h"])
    }
    bo_frames = [sent_nals(f) for f in h264_frames(*LAYER_SIZES["l"], 60, gop=30)]
    in_webm, in_mkv = demuxed(webm), demuxed(mkv)
    assert set(in_webm) == {"vp8", "opus"} and set(in_mkv) == {"h264", "opus"}, "sound in both"
    assert all(data in chair_frames for data, *_ in in_webm["vp8"]), "the chair's VP8"
    assert all(lengths_to_nals(data) in bo_frames for data, *_ in in_mkv["h264"]), "Bo's H.264"
    assert in_webm["vp8"][0][3] and in_mkv["h264"][0][3], "each starts at a keyframe"
    with av.open(str(mkv)) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (320, 180)
        assert len(list(c.decode(video=0))) == len(in_mkv["h264"])
    for peer in (chair_cam, bo_cam, chair_mic, bo_mic):
        await peer.close()
    for c in (chair, bo):
        await c.close()


@pytest.mark.parametrize(("codec", "name"), [("vp8", "stage.webm"), ("h264", "stage.mkv")])
async def test_a_camera_on_node_a_is_recorded_on_node_b(
    start_node, invites, redis_url, tmp_path, codec, name
) -> None:  # type: ignore[no-untyped-def]
    """The recording node taps a source published on another node: its layers cross the
    bus, its keyframe request goes back over it."""
    for q in LAYER_SIZES:
        vp8_frames(*LAYER_SIZES[q], 60, gop=30, bitrate=LAYER_BITS[q])
    a = await start_node(redis_url, name="A", settings={"recordings": str(tmp_path / "a")})
    b = await start_node(redis_url, name="B", settings={"recordings": str(tmp_path / "b")})
    token = invites.mint(room="plenary", role="moderator", name="Chair")
    on_a, on_b = await Client.connect(a.url, token), await Client.connect(b.url, token)
    camera = await publish_camera(on_a, codec=codec)
    task = asyncio.create_task(camera.play(100_000))
    assert (await on_b.request("recording.start"))["ok"]
    rec = await on_a.wait_for(lambda s: s["audio"]["recording"], timeout(5))
    assert rec["node"] == "B"
    path = tmp_path / "b" / "plenary" / rec["id"] / name
    await eventually(
        lambda: frames_in(path, codec),
        until=lambda n: n >= 30,
        timeout=20,
        message="node B's stage file to hold 30 frames of node A's camera",
    )
    await on_b.command("recording.stop")
    await on_a.wait_for(lambda s: s["audio"]["recording"] is None, timeout(5))
    task.cancel()
    video = demuxed(path)[codec]
    if codec == "vp8":
        best = {d for d, _ in vp8_frames(*LAYER_SIZES["h"], 60, gop=30, bitrate=LAYER_BITS["h"])}
        assert video[0][3] and all(data in best for data, *_ in video)
    else:
        best_nals = [sent_nals(f) for f in h264_frames(*LAYER_SIZES["h"], 60, gop=30)]
        assert video[0][3] and all(lengths_to_nals(data) in best_nals for data, *_ in video)
    assert not (tmp_path / "a" / "plenary" / rec["id"] / name).exists()
    await camera.close()
    for c in (on_a, on_b):
        await c.close()
