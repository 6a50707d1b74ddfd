"""Opus DTX through the passthrough: fewer packets in silence, speech onsets whole.

The chair's page speaks on the floor — short espeak-ng phrases, each followed by 2 s of
silence, looped by Chromium's fake microphone — and a participant's page listens. The same
page publishes twice: once with the node's answer as it is (``usedtx=1`` beside
``useinbandfec=1``), once with the answer without ``usedtx``. For each, over one loop of the
signal:

- the publisher's own ``getStats`` (outbound-rtp ``packetsSent``, ``bytesSent``): DTX must
  send clearly fewer packets (in silence one comfort-noise packet per 400 ms, not 50 a
  second);
- the speech onsets: the node records the packets it forwards (a listener gets exactly these
  bytes: no re-encoding), decodes them on their RTP timeline and aligns them with the
  reference signal (best correlation of the 10 ms envelopes); each phrase must rise (reach
  −30 dB of its peak) as early after DTX's silence as without DTX — a cut onset rises late;
- the listener's ``getStats`` (concealed, silent concealed, inserted and removed samples),
  printed with ``-s``.
"""

from __future__ import annotations

import array
import asyncio
from pathlib import Path
from typing import Any

import pytest

from server.media import signalling

from .audio_helpers import loopback_ice  # noqa: F401 (fixture)
from .conftest import CHROMIUM_ARGS, timeout
from .reach_helpers import chair_and_ana, listen, mic_off, mic_on, speech_with_pauses_wav

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("loopback_ice")]

RATE = 48_000
STEP = 480
"""Envelope frames of 10 ms."""
WARMUP = 3.0


@pytest.fixture
def reference(tmp_path: Path) -> array.array[int]:
    return speech_with_pauses_wav(tmp_path / "pauses.wav")


@pytest.fixture
def browser_args(tmp_path: Path, reference: array.array[int]) -> list[str]:
    return [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={tmp_path / 'pauses.wav'}"]


SENT = """async () => {
  let bytes = 0, headers = 0, packets = 0;
  (await HC.audio.mic.pc.getStats()).forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'audio') {
      bytes += s.bytesSent; headers += s.headerBytesSent; packets += s.packetsSent;
    }
  });
  return { bytes, headers, packets };
}"""

HEARD = """async () => {
  const r = { concealed: 0, silent: 0, inserted: 0, removed: 0, total: 0 };
  (await HC.audio.pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      r.concealed += s.concealedSamples || 0; r.silent += s.silentConcealedSamples || 0;
      r.inserted += s.insertedSamplesForDeceleration || 0;
      r.removed += s.removedSamplesForAcceleration || 0; r.total += s.totalSamplesReceived || 0;
    }
  });
  return r;
}"""


def envelope(samples: array.array[int] | list[int]) -> list[float]:
    """Mean square per 10 ms frame."""
    return [
        sum(x * x for x in samples[i : i + STEP]) / STEP
        for i in range(0, len(samples) - STEP + 1, STEP)
    ]


def decode(packets: list[tuple[int, bytes]]) -> list[int]:
    """The forwarded packets decoded on their RTP timeline (left channel), as a listener's
    decoder would play them; silence where nothing was sent."""
    import av

    dec = av.CodecContext.create("libopus", "r")
    dec.format = "s16"  # type: ignore[attr-defined]
    dec.layout = "stereo"  # type: ignore[attr-defined]
    dec.sample_rate = RATE  # type: ignore[attr-defined]
    first = packets[0][0]
    end = (packets[-1][0] - first) & 0xFFFFFFFF
    out = [0] * (end + 2 * RATE)
    for ts, payload in packets:
        at = (ts - first) & 0xFFFFFFFF
        for frame in dec.decode(av.Packet(payload)):
            left = array.array("h", bytes(frame.planes[0]))[: frame.samples * 2 : 2]
            out[at : at + len(left)] = left
            at += len(left)
    return out[:end]


def onsets(ref: list[float]) -> list[int]:
    """Frames where a phrase starts: loud after at least 0.5 s of digital silence."""
    loud = max(ref) * 1e-3
    found, quiet = [], 50
    for i, e in enumerate(ref):
        if e > loud and quiet >= 50:
            found.append(i)
        quiet = quiet + 1 if e <= loud else 0
    return found


def align(heard: list[float], ref: list[float]) -> int:
    """The lag (frames) at which one loop of ``heard`` best matches the looped reference:
    ``heard[i]`` goes with ``ref[(i + lag) % len(ref)]``."""
    period = len(ref)
    assert len(heard) >= period, "less than one loop of the signal was forwarded"
    best, lag = -1.0, 0
    for k in range(period):
        c = sum(heard[i] * ref[(i + k) % period] for i in range(0, period, 2))
        if c > best:
            best, lag = c, k
    return lag


def rise(env: list[float], start: int, length: int, period: int) -> int:
    """Frames from ``start`` until ``env`` first reaches 1/1000 (−30 dB) of its peak over the
    next ``length`` frames (wrapping around one loop)."""
    window = [env[(start + i) % period] for i in range(length)]
    floor = max(window) * 1e-3
    return next(i for i, e in enumerate(window) if e >= floor)


def onset_delays(heard: list[float], ref: list[float]) -> list[int]:
    """Per phrase: how many 10 ms frames later than in the reference the heard phrase rises
    (the delay common to all phrases — capture, coding — removed by the alignment)."""
    period = len(ref)
    lag = align(heard, ref)
    span = heard[:period]
    starts = onsets(ref)
    ends = [*starts[1:], starts[0] + period]
    out = []
    for s, e in zip(starts, ends, strict=True):
        early = s - 20  # from 200 ms before the phrase, in heard's time
        out.append(
            rise(span, (early - lag) % period, e - early, period)
            - rise(ref, early, e - early, period)
        )
    return out


async def publish_and_measure(
    chair: Any, ana: Any, taken: list[tuple[int, bytes]], seconds: float
) -> dict[str, Any]:
    await asyncio.sleep(WARMUP)  # the first packets after the answer: not the window
    sent0, heard0 = await chair.evaluate(SENT), await ana.evaluate(HEARD)
    taken.clear()
    await asyncio.sleep(seconds)  # the window: one loop of the signal and a little more
    packets = list(taken)
    sent1, heard1 = await chair.evaluate(SENT), await ana.evaluate(HEARD)
    return {
        "packets": sent1["packets"] - sent0["packets"],
        "bytes": sent1["bytes"] - sent0["bytes"],
        "headers": sent1["headers"] - sent0["headers"],
        "heard": {k: heard1[k] - heard0[k] for k in heard0},
        "forwarded": packets,
    }


@pytest.mark.timeout(timeout(240))  # two browsers, video and audio: ~70 s alone, more on a busy box
async def test_dtx_is_negotiated_and_saves_packets_in_pauses_without_cutting_onsets(
    start_node, invites, browser, reference: array.array[int], monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    room = node.node.feature["audio"].rooms["plenary"]
    taken: list[tuple[int, bytes]] = []
    ingest = room.signalling.router.ingest

    def tap(pub: Any, packet: Any) -> None:
        taken.append((packet.timestamp, bytes(packet.payload)))
        ingest(pub, packet)

    monkeypatch.setattr(room.signalling.router, "ingest", tap)
    chair, ana = await chair_and_ana(browser, node, invites)
    await listen(ana)
    loop = len(reference) / RATE
    await mic_on(chair)
    answer = await chair.evaluate("HC.audio.mic.pc.remoteDescription.sdp")
    assert "usedtx=1" in answer and "useinbandfec=1" in answer, answer
    on = await publish_and_measure(chair, ana, taken, loop + 1.0)
    with monkeypatch.context() as m:
        m.setattr(signalling, "with_opus_dtx", lambda sdp, pt: sdp)
        await mic_off(chair)
        await mic_on(chair)
        answer = await chair.evaluate("HC.audio.mic.pc.remoteDescription.sdp")
        assert "usedtx=1" not in answer and "useinbandfec=1" in answer, answer
        off = await publish_and_measure(chair, ana, taken, loop + 1.0)

    ref = envelope(reference)
    for r in (on, off):
        r["delays"] = onset_delays(envelope(decode(r["forwarded"])), ref)
    for label, r in (("DTX on", on), ("DTX off", off)):
        h = r["heard"]
        print(
            f"reach dtx: {label}: {r['packets']} packets, {r['bytes']} payload and "
            f"{r['headers']} RTP header bytes sent in "
            f"{loop + 1.0:.1f} s ({r['packets'] / (loop + 1.0):.1f}/s); phrases rise "
            f"{[10 * d for d in r['delays']]} ms after the reference's; listener: concealed "
            f"{h['concealed'] / max(1, h['total']):.1%} (silent "
            f"{h['silent'] / max(1, h['total']):.1%}), inserted {h['inserted']}, "
            f"removed {h['removed']} of {h['total']} samples"
        )
    # DTX saves: the signal is silent more than half of the time.
    assert on["packets"] < 0.75 * off["packets"], (on["packets"], off["packets"])
    assert on["bytes"] < 0.9 * off["bytes"], (on["bytes"], off["bytes"])
    # …and cuts no onset: each phrase rises as early (10 ms frames) as without DTX.
    assert max(on["delays"]) <= max(off["delays"]) + 1, (on["delays"], off["delays"])
    await chair.close()
    await ana.close()
