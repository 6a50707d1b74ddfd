"""WebM by remuxing, without sockets: frames from RTP payloads, switches at keyframes, losses.

Real VP8 (libvpx output, encoded once by the helpers) is cut into RTP payloads the way a
browser sends it, fed to :class:`WebmFile`, and the file is read back with PyAV.
"""

from __future__ import annotations

from pathlib import Path

import av

from server.media import vp8
from server.media.oggopus import SILENCE
from server.media.webm import WebmFile, keyframe_size

from .audio_helpers import opus_tone
from .test_stage_recording import demuxed
from .video_helpers import vp8_frames

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
