"""WebM by remuxing, without sockets: frames from RTP payloads, switches at keyframes, losses.

Real VP8 (libvpx output, encoded once by the helpers) is cut into RTP payloads the way a
browser sends it, fed to :class:`WebmFile`, and the file is read back with PyAV.
"""

from __future__ import annotations

from pathlib import Path

import av

from server.media import h264, vp8
from server.media.oggopus import SILENCE
from server.media.webm import WebmFile, keyframe_size

from .audio_helpers import opus_tone
from .test_stage_recording import demuxed, lengths_to_nals, sent_nals
from .video_helpers import h264_frames, vp8_frames

BIG = vp8_frames(640, 360, 60, gop=30, bitrate=500_000)
SMALL = vp8_frames(320, 180, 60, gop=30, bitrate=150_000)


class Camera:
    """Cuts frames into RTP payloads as a browser does, with its own sequence numbers."""

    def __init__(self, frames: tuple[tuple[bytes, bool], ...], seq: int = 100) -> None:
        self.frames, self.seq, self.pic = frames, seq, 0

    def packets(self, n: int) -> list[tuple[int, vp8.Vp8, bool, bytes]]:
        data, _ = self.frames[n % len(self.frames)]
        payloads = vp8.packetize(data, self.pic, tl0picidx=0, tid=0, size=300)
        self.pic += 1
        out = []
        for i, payload in enumerate(payloads):
            self.seq = (self.seq + 1) & 0xFFFF
            d = vp8.parse(payload)
            out.append((self.seq, d, i == len(payloads) - 1, payload[d.header :]))
        return out


def feed(f: WebmFile, key: str, cam: Camera, n: int, now: float, drop: int | None = None) -> bool:
    asked = False
    for i, (seq, d, marker, data) in enumerate(cam.packets(n)):
        if i != drop:
            asked |= f.video(key, seq, d.start, d.keyframe, marker, data, now)
    return asked


def test_frames_switch_only_at_a_keyframe_and_a_loss_waits_for_one(tmp_path: Path) -> None:
    path = tmp_path / "stage.webm"
    f = WebmFile(path, 0.0, audio=True)
    voice = opus_tone(440, 100)
    big, small = Camera(BIG), Camera(SMALL, seq=65_530)  # its sequence numbers wrap
    f.show("big")
    t = 0.0
    for n in range(10):  # audio before the first picture is kept
        f.audio(voice[n], t)
        t += 0.02
    assert not path.exists(), "no file before a picture"
    for n in range(40):
        feed(f, "big", big, n, t)
        t += 1 / 30
    f.show("small")  # SMALL's frame 5 is no keyframe: big goes on until small's frame 30
    asked = []
    for n in range(5, 40):
        asked.append(feed(f, "small", small, n, t))
        feed(f, "big", big, 35 + n, t)
        t += 1 / 30
    assert asked[0] and not asked[-1], "waiting for a keyframe asks for one, until it came"
    feed(f, "small", small, 40, t, drop=0)  # a packet lost: frames are dropped until a key
    for n in range(41, 66):  # SMALL loops: its frame 60 is its first keyframe again
        assert feed(f, "small", small, n, t + (n - 40) / 30) == (n < 60)
    for n in range(10, 100):  # then silence over a gap of two seconds, then the voice again
        f.audio(voice[n], t + 2 + 0.02 * n)
    t += 4
    f.close()

    got = demuxed(path)
    video = [data for data, *_ in got["vp8"]]
    big_frames = [d for d, _ in BIG]
    small_frames = [d for d, _ in SMALL]
    switch = next(i for i, v in enumerate(video) if v in small_frames)
    assert video[:switch] == [big_frames[n % 60] for n in range(switch)], "big, in order, whole"
    assert keyframe_size(video[0]) == (640, 360) and keyframe_size(video[switch]) == (320, 180)
    assert video[switch:] == small_frames[30:40] + small_frames[0:6], (
        "small from its keyframe on; after the loss, nothing until the next keyframe"
    )
    assert [p for p, *_ in got["opus"] if p != SILENCE] == voice, "every Opus packet, as sent"
    assert len(got["opus"]) > len(voice) + 50, "silence over the gap"
    for packets in got.values():
        dts = [p[2] for p in packets]
        assert all(a < b for a, b in zip(dts, dts[1:], strict=False))
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == "vp8"
        assert (c.streams.video[0].width, c.streams.video[0].height) == (640, 360)
        assert len(c.streams.audio[0].codec_context.extradata or b"") == 19, "OpusHead"


def test_no_picture_no_file_and_a_sign_file_has_no_sound(tmp_path: Path) -> None:
    f = WebmFile(tmp_path / "none.webm", 0.0, audio=True)
    for n, p in enumerate(opus_tone(440, 20)):
        f.audio(p, n * 0.02)
    f.close()
    assert not (tmp_path / "none.webm").exists()
    sign = WebmFile(tmp_path / "sign-is.webm", 0.0, audio=False)
    sign.show("is")
    cam = Camera(SMALL)
    for n in range(31):
        feed(sign, "is", cam, n, n / 30)
    sign.audio(b"\xf8\xff\xfe", 0.5)  # ignored
    sign.close()
    got = demuxed(tmp_path / "sign-is.webm")
    assert list(got) == ["vp8"] and len(got["vp8"]) == 31


# -- H.264 into Matroska ---------------------------------------------------------------------


class H264Camera:
    """H.264 access units cut into RTP payloads (STAP-A, single NAL units, FU-A)."""

    def __init__(self, frames: tuple[tuple[bytes, ...], ...], seq: int = 100) -> None:
        self.frames, self.seq = frames, seq

    def feed(self, f: WebmFile, key: str, n: int, now: float, drop: int | None = None) -> bool:
        asked = False
        payloads = self.frames[n % len(self.frames)]
        for i, payload in enumerate(payloads):
            self.seq = (self.seq + 1) & 0xFFFF
            if i == drop:
                continue
            start = i == 0
            keyframe = start and h264.sps_in(payload) is not None
            data = h264.annex_b(payload)
            asked |= f.video(key, self.seq, start, keyframe, i == len(payloads) - 1, data, now)
        return asked


def test_h264_goes_into_matroska_as_sent_with_its_parameter_sets(tmp_path: Path) -> None:
    """A 640×360 camera, a switch to a 320×180 one at its IDR picture, a lost packet (frames
    dropped until the next IDR): the file is Matroska with an H.264 track whose CodecPrivate
    is the avcC of the first SPS and PPS, every frame is the camera's NAL units, and FFmpeg
    decodes every one of them at the size of its run."""
    big_frames = h264_frames(640, 360, 60, gop=30)
    small_frames = h264_frames(320, 180, 60, gop=30)
    path = tmp_path / "stage.mkv"
    f = WebmFile(path, 0.0, audio=True, codec="h264")
    voice = opus_tone(440, 100)
    big, small = H264Camera(big_frames), H264Camera(small_frames, seq=65_530)
    f.show("big")
    t = 0.0
    for n in range(5):
        f.audio(voice[n], t)
        t += 0.02
    for n in range(40):
        big.feed(f, "big", n, t)
        f.audio(voice[5 + n], t)
        t += 1 / 30
    f.show("small")
    asked = [
        small.feed(f, "small", n, t + n / 30) or big.feed(f, "big", 40 + n, t) for n in range(5, 40)
    ]
    assert asked[0] and not asked[-1], "waiting for the IDR picture asks for one, until it came"
    t += 2
    small.feed(f, "small", 40, t, drop=1)  # a packet lost: nothing until the next IDR
    for n in range(41, 66):
        assert small.feed(f, "small", n, t + (n - 40) / 30) == (n < 60)
    f.close()

    with av.open(str(path)) as c:
        assert c.format.name.startswith("matroska")
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.width, stream.height) == (640, 360)
        avcc = stream.codec_context.extradata or b""
        sps = next(n for n in sent_nals(big_frames[0]) if n[0] & 0x1F == h264.SPS)
        pps = next(n for n in sent_nals(big_frames[0]) if n[0] & 0x1F == h264.PPS)
        assert avcc[0] == 1 and avcc[1:4] == sps[1:4], "avcC: version, profile, level"
        assert avcc[4] & 3 == 3, "four-byte NAL unit lengths"
        assert sps in avcc and pps in avcc, "the stream's own parameter sets"
        assert c.streams.audio[0].codec_context.name == "opus"
        packets = [(bytes(p), p.is_keyframe) for p in c.demux(video=0) if p.size]
    with av.open(str(path)) as c:
        decoded = [(fr.width, fr.height) for fr in c.decode(video=0)]
    video = [lengths_to_nals(data) for data, _ in packets]
    big_nals = [sent_nals(fr) for fr in big_frames]
    small_nals = [sent_nals(fr) for fr in small_frames]
    switch = next(i for i, v in enumerate(video) if v in small_nals)
    assert video[:switch] == [big_nals[n % 60] for n in range(switch)], "big, in order, whole"
    assert video[switch:] == small_nals[30:40] + small_nals[0:6], (
        "small from its IDR picture on; after the loss, nothing until the next one"
    )
    assert packets[0][1] and packets[switch][1], "the runs start at keyframes"
    assert decoded == [(640, 360)] * switch + [(320, 180)] * (len(video) - switch), (
        "FFmpeg decodes every frame, each at its stream's size"
    )


def test_an_h264_file_starts_only_with_its_parameter_sets(tmp_path: Path) -> None:
    """Frames before the first access unit with SPS, PPS and IDR make no file."""
    frames = h264_frames(320, 180, 60, gop=30)
    f = WebmFile(tmp_path / "sign-is.mkv", 0.0, audio=False, codec="h264")
    f.show("is")
    cam = H264Camera(frames)
    for n in range(20, 29):  # the middle of a GOP: nothing to start from
        cam.feed(f, "is", n, n / 30)
    assert f.out is None
    for n in range(29, 61):
        cam.feed(f, "is", n, n / 30)
    f.close()
    with av.open(str(tmp_path / "sign-is.mkv")) as c:
        assert [s.type for s in c.streams] == ["video"]
        assert sum(1 for _ in c.decode(video=0)) == 31
