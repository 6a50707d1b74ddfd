"""Flash and beep: the audio–video offset at the interpreter's console, in Chromium.

An aiortc speaker (the chair, on stage, with the floor) sends the floor microphone (Opus,
20 ms frames) and the camera (VP8 simulcast, 30 frames/s) from **one clock**. Every two
seconds both carry an event made at the same capture instant: the camera's frames turn
white for 100 ms (the first white frame is each layer's keyframe) and the microphone
beeps (1 kHz, loud, 100 ms) over a quiet hum. The interpreter's console
(static/booth.js, ``#console-stage``) shows the speaker and plays the floor as it does for
any interpreter; the test adds only probes to the page:

- video: ``requestVideoFrameCallback`` on the speaker's ``<video>`` reads each frame's
  brightness through a canvas; a flash is the first bright frame, at its
  ``metadata.expectedDisplayTime`` (when the compositor shows it);
- audio: a ScriptProcessorNode on the page's own AudioContext, fed the streams of the
  floor's ``<audio>`` elements, finds each beep's first loud sample; its context time
  (from the event's ``playbackTime``, to a 256-sample buffer) becomes a page time through
  ``AudioContext.getOutputTimestamp()`` (when the output plays it). An AudioWorklet would
  be exact to the sample, but its module cannot be loaded under the page's
  Content-Security-Policy (``script-src 'self'``; Playwright's router does not serve
  worklet requests) without adding a file to the product.

Both are ``performance.now()`` times of one page, so an event's offset is
``flash − beep`` (positive: the picture comes after the sound). The probe's copy of the
sound goes through WebAudio's input FIFO and its own output buffer, so it may sound a few
tens of milliseconds after the ``<audio>`` element does: the offset measured errs on the
side of the picture being early. Opus's own delay (the encoder's look-ahead, 6.5 ms) is
measured by decoding the packets sent and taken out.

``skew`` moves every beep that many seconds after its flash at the source: a check that
the measurement sees a known offset (``bench/avsync.py --console --skew 0.15``).
``sync=False`` turns the page's lip sync (static/video.js) off: the console as it was.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fractions
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import av

from server.client import Client

from .audio_helpers import Mic, publish
from .conftest import timeout
from .video_helpers import LAYER_SIZES, Camera, publish_camera

RATE = 48_000
FPS = 30
PERIOD = 2  # seconds between events: longer than any latency seen on a loaded machine
FLASH_FRAMES = 3  # 100 ms of white
BEEP = 0.1  # seconds of 1 kHz
SETTLE = 3  # seconds between the probes' start and the first event counted
THRESHOLD = 0.1  # a loud sample (the beep's peak is 0.5, the hum's 0.015)


@cache
def flash_frames(width: int, height: int) -> tuple[bytes, ...]:
    """One period of VP8: frame 0 (the keyframe) and the two after it white, the rest dark.

    Looping it is valid: every period starts with a keyframe."""
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base = fractions.Fraction(1, FPS)
    enc.bit_rate = 500_000
    enc.gop_size = FPS * PERIOD
    enc.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    out: list[tuple[bytes, bool]] = []
    n = 0
    while len(out) < FPS * PERIOD:
        frame = av.VideoFrame(width, height, "yuv420p")
        luma = 235 if n < FLASH_FRAMES else 24
        for i, plane in enumerate(frame.planes):
            fill = luma if i == 0 else 128
            stride = plane.line_size
            plane.update((bytes([fill]) * plane.width + bytes(stride - plane.width)) * plane.height)
        frame.pts = n
        out += [(bytes(p), bool(p.is_keyframe)) for p in enc.encode(frame)]
        n += 1
    keys = [k for _, k in out[: FPS * PERIOD]]
    assert keys == [True] + [False] * (FPS * PERIOD - 1), f"one keyframe a period: {keys}"
    return tuple(d for d, _ in out[: FPS * PERIOD])


@cache
def dark_key(width: int, height: int) -> bytes:
    """A keyframe of the dark picture, to answer a keyframe request between flashes."""
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base = fractions.Fraction(1, FPS)
    enc.bit_rate = 500_000
    enc.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    frame = av.VideoFrame(width, height, "yuv420p")
    for i, plane in enumerate(frame.planes):
        fill = 24 if i == 0 else 128
        plane.update(
            (bytes([fill]) * plane.width + bytes(plane.line_size - plane.width)) * plane.height
        )
    frame.pts = 0
    packets = [bytes(p) for p in enc.encode(frame)] + [bytes(p) for p in enc.encode(None)]
    return packets[0]


class FlashCamera(Camera):
    """The camera of the flash: frame ``frames % 60`` of :func:`flash_frames` per layer.

    A keyframe request is answered with a dark keyframe once the flash is over (a white
    one out of turn would be a flash at the wrong time); the flash's frames wait for the
    next period's keyframe."""

    def next_frame(self, q: str) -> bytes:
        i = self.frames % (FPS * PERIOD)
        size = LAYER_SIZES[q]
        if i == 0:
            self.want_key[q] = False
        elif self.want_key[q] and i >= FLASH_FRAMES:
            self.want_key[q] = False
            return dark_key(*size)
        return flash_frames(*size)[i]


@cache
def beep_packets(seconds: int, skew: float = 0.0) -> tuple[bytes, ...]:
    """``seconds`` of Opus: a quiet 200 Hz hum, and a loud 1 kHz beep of 100 ms starting
    ``skew`` seconds after the start of each period."""
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format = RATE, "mono", "s16"
    enc.bit_rate = 48_000
    enc.time_base = fractions.Fraction(1, RATE)
    out: list[bytes] = []
    start = int(round(skew * RATE))
    for i in range(seconds * 50):
        samples = array.array("h", bytes(960 * 2))
        for n in range(960):
            s = i * 960 + n
            pos = (s - start) % (RATE * PERIOD)
            loud = pos < BEEP * RATE
            samples[n] = int(
                (16_000 if loud else 500)
                * math.sin(2 * math.pi * (1000 if loud else 200) * s / RATE)
            )
        frame = av.AudioFrame(format="s16", layout="mono", samples=960)
        frame.sample_rate = RATE
        frame.pts = i * 960
        frame.planes[0].update(samples.tobytes())
        out += [bytes(p) for p in enc.encode(frame)]
    return tuple(out[: seconds * 50])


def opus_delay(packets: tuple[bytes, ...], skew: float = 0.0) -> float:
    """Seconds from a beep's place in the source to its first loud decoded sample (libopus,
    as Chromium decodes, without a pre-skip)."""
    dec = av.CodecContext.create("libopus", "r")
    dec.sample_rate, dec.layout = RATE, "mono"
    decoded: list[float] = []
    for p in packets[: 50 * PERIOD]:
        for frame in dec.decode(av.Packet(p)):
            flt = frame.format.name.startswith("flt")
            data = array.array(
                "f" if flt else "h", bytes(frame.planes[0])[: frame.samples * (4 if flt else 2)]
            )
            decoded += [x if flt else x / 32768 for x in data]
    first = next(i for i, x in enumerate(decoded) if abs(x) > THRESHOLD)
    return first / RATE - skew


# -- the page's probes ------------------------------------------------------------------------

PROBE = """async ([video, THRESHOLD]) => {
  const P = window.hcAvsync = { flashes: [], beeps: [], frames: 0, streams: 0 };
  const origin = performance.timeOrigin;
  // the picture: a frame's brightness, from a 16x9 copy
  const canvas = document.createElement("canvas");
  canvas.width = 16; canvas.height = 9;
  const g = canvas.getContext("2d", { willReadFrequently: true });
  let el = null, bright = false;
  const onFrame = (v) => (now, meta) => {
    if (v !== el) return;
    g.drawImage(v, 0, 0, 16, 9);
    const d = g.getImageData(0, 0, 16, 9).data;
    let sum = 0;
    for (let i = 1; i < d.length; i += 4) sum += d[i];
    const lit = sum / (d.length / 4) > 128;
    P.frames++;
    if (lit && !bright) P.flashes.push({ at: origin + meta.expectedDisplayTime,
      presented: origin + meta.presentationTime, rtp: meta.rtpTimestamp });
    bright = lit;
    v.requestVideoFrameCallback(onFrame(v));
  };
  // the sound: an onset detector on the floor's <audio> elements, in the page's context
  const ctx = HC.audio.context();
  const onset = ctx.createScriptProcessor(256, 1, 1);
  let quiet = 0;
  onset.onaudioprocess = (e) => {
    // This input was rendered over the buffer before e.playbackTime (the output's turn).
    const x = e.inputBuffer.getChannelData(0), n = x.length, rate = ctx.sampleRate;
    for (let i = 0; i < n; i++) {
      if (Math.abs(x[i]) > THRESHOLD) {
        if (quiet > rate * 0.4) {
          const t = e.playbackTime - n / rate + i / rate;
          const out = ctx.getOutputTimestamp();
          P.beeps.push({ at: origin + out.performanceTime + (t - out.contextTime) * 1000 });
        }
        quiet = 0;
      } else quiet++;
    }
  };
  const mute = ctx.createGain();
  mute.gain.value = 0;
  onset.connect(mute).connect(ctx.destination);
  const fed = new Set();
  const follow = () => {
    const v = document.querySelector(video);
    if (v && v !== el) { el = v; bright = false; v.requestVideoFrameCallback(onFrame(v)); }
    for (const a of document.querySelectorAll("audio[id^='audio-main']")) {
      const t = a.srcObject && a.srcObject.getAudioTracks()[0];
      if (t && !fed.has(t.id)) {
        fed.add(t.id);
        ctx.createMediaStreamSource(a.srcObject).connect(onset);
        P.streams++;
      }
    }
  };
  follow();
  setInterval(follow, 100);
  return { rate: ctx.sampleRate, baseLatency: ctx.baseLatency, outputLatency: ctx.outputLatency };
}"""

STATS = """async () => {
  const out = {};
  for (const [kind, pc] of [["audio", HC.audio.pc], ["video", HC.video.state.view.pc]]) {
    for (const s of (await pc.getStats()).values()) {
      if (s.type !== "inbound-rtp" || s.kind !== kind) continue;
      const n = kind === "audio" ? s.jitterBufferEmittedCount : s.framesDecoded;
      if (!n) continue;
      const row = out[kind] = out[kind] || { jitter_ms: 0, decode_ms: 0, packets: 0 };
      if (s.packetsReceived < row.packets) continue;
      row.packets = s.packetsReceived;
      row.jitter_ms = 1000 * s.jitterBufferDelay / s.jitterBufferEmittedCount;
      if (kind === "video") row.decode_ms = 1000 * s.totalDecodeTime / s.framesDecoded;
    }
  }
  return out;
}"""

TILE = "#console-stage .tile[data-role='main']:not(.novideo) video"


@dataclass
class Offsets:
    """What one run measured: per event, the epoch times of its send, beep and flash."""

    sync: bool
    sent: list[float]
    beeps: list[float]
    flashes: list[float]
    codec_delay: float
    skew: float
    page: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    load: float = 0.0

    def paired(self) -> list[tuple[int, float, float]]:
        """(event, beep, flash) for the events both of the page's probes saw. Events are a
        period apart: a stream's latency (under a period) is the circular mean of its
        detections' phases, and each detection belongs to the event it then points at."""

        def events(times: list[float], shift: float) -> dict[int, float]:
            if not times or not self.sent:
                return {}
            t0 = self.sent[0]
            phases = [2 * math.pi * ((t - shift - t0) % PERIOD) / PERIOD for t in times]
            mean = math.atan2(sum(map(math.sin, phases)), sum(map(math.cos, phases)))
            latency = (mean / (2 * math.pi)) % 1.0 * PERIOD
            out: dict[int, float] = {}
            for t in times:
                k = round((t - shift - t0 - latency) / PERIOD)
                if 0 <= k < len(self.sent) and k not in out:
                    out[k] = t
            return out

        beeps = events(self.beeps, self.skew)
        flashes = events(self.flashes, 0.0)
        return [(k, beeps[k], flashes[k]) for k in sorted(beeps.keys() & flashes.keys())]

    def offsets(self) -> list[float]:
        """flash − (beep − Opus's delay − skew), seconds: positive, the picture is late."""
        return [f - (b - self.codec_delay - self.skew) for _, b, f in self.paired()]

    def latencies(self) -> tuple[list[float], list[float]]:
        pairs = self.paired()
        audio = [b - self.codec_delay - self.skew - self.sent[k] for k, b, _ in pairs]
        return audio, [f - self.sent[k] for k, _, f in pairs]

    def median(self) -> float:
        return statistics.median(self.offsets())


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(runs: list[Offsets]) -> str:
    """The Markdown table of runs, in milliseconds."""
    lines = [
        "| run | lip sync | load | events | audio p50 | video p50 | offset p50 | offset p95 (abs) "
        "| audio jitter buffer | video jitter buffer + decode |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, r in enumerate(runs, 1):
        off = r.offsets()
        a, v = r.latencies()
        sync = r.page.get("sync", {})
        on = (
            f"on (target {sync.get('target', 0)} ms, output {sync.get('out', 0):.0f} ms)"
            if r.sync
            else "off"
        )
        if not off:
            lines.append(f"| {n} | {on} | {r.load:.1f} | 0/{len(r.sent)} | – | – | – | – | – | – |")
            continue
        st_a, st_v = r.stats.get("audio", {}), r.stats.get("video", {})
        lines.append(
            f"| {n} | {on} | {r.load:.1f} | {len(off)}/{len(r.sent)} "
            f"| {statistics.median(a) * 1000:.0f} ms | {statistics.median(v) * 1000:.0f} ms "
            f"| **{statistics.median(off) * 1000:+.0f} ms** "
            f"| {pct([abs(x) for x in off], 0.95) * 1000:.0f} ms "
            f"| {st_a.get('jitter_ms', 0):.0f} ms "
            f"| {st_v.get('jitter_ms', 0):.0f} + {st_v.get('decode_ms', 0):.0f} ms |"
        )
    return "\n".join(lines)


async def speak(
    mic: Mic, camera: Camera, packets: tuple[bytes, ...], sent: list[float], stop: asyncio.Event
) -> None:
    """Microphone and camera from one clock until ``stop``: audio frame ``a`` at ``a × 20 ms``
    (``packets``, one period, looped), video frame ``v`` at ``v / 30 s``; ``sent`` gets the
    wall time of each period's start (an event)."""
    start = time.monotonic()
    a = v = 0
    while not stop.is_set():
        now = time.monotonic() - start
        if now >= a * 0.02:
            if a % (50 * PERIOD) == 0:
                sent.append(time.time())
            mic.track.push(packets[a % (50 * PERIOD)], mic.ts)
            mic.ts += 960
            a += 1
        if now >= v / FPS:
            await camera.send_frame()
            v += 1
        due = min(a * 0.02, v / FPS)
        await asyncio.sleep(max(0.0, due - (time.monotonic() - start)))


async def measure(
    browser: Any,
    url: str,
    invites: Any,
    seconds: int = 20,
    skew: float = 0.0,
    sync: bool = True,
) -> Offsets:
    """One run: the chair speaks on the floor with the camera on; the interpreter's console
    (a Chromium page of ``browser``) shows and plays them; the probes time each event."""
    # the second period: the encoder has settled
    packets = beep_packets(2 * PERIOD, skew)[50 * PERIOD :]
    for size in LAYER_SIZES.values():  # encoded before anything connects
        flash_frames(*size)
        dark_key(*size)
    chair = await Client.connect(url, invites.mint(room="plenary", role="moderator", name="C"))
    page = None
    mic = camera = speaking = None
    stop = asyncio.Event()
    try:
        await chair.command("floor.grant", {"pid": chair.me})
        context = await browser.new_context(viewport={"width": 1366, "height": 768})
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on(
            "console",
            lambda m: errors.append(f"console.error: {m.text}") if m.type == "error" else None,
        )
        token = invites.mint(room="plenary", role="interpreter", name="Ivan", booth="es")
        await page.goto(f"{url}/r/plenary#t={token}")
        await page.wait_for_function(
            "() => HC.connected && HC.audio && HC.stage"
            " && document.getElementById('console-stage')",
            timeout=timeout(15) * 1000,
        )
        if not sync:  # the console as it was before the page's lip sync
            await page.evaluate("() => { HC.video.state.sync.on = false; }")
        mic = await publish(chair, "floor")
        camera = await publish_camera(chair, "camera", kind=FlashCamera)
        sent: list[float] = []
        speaking = asyncio.create_task(speak(mic, camera, packets, sent, stop))
        try:
            await page.wait_for_function(
                f"() => {{ const v = document.querySelector({TILE!r}); return v && v.videoWidth > 0"
                " && HC.audio.pc && HC.audio.pc.connectionState === 'connected'; }",
                timeout=timeout(20) * 1000,
            )
        except Exception as exc:
            seen = await page.evaluate(
                "() => ({ tiles: [...document.querySelectorAll('#console-stage .tile')]"
                ".map((t) => t.outerHTML.slice(0, 200)),"
                " listen: HC.audio.pc && HC.audio.pc.connectionState,"
                " view: HC.video.state.view && HC.video.state.view.pc.connectionState,"
                " sources: HC.video.state.sources })"
            )
            raise AssertionError(f"the console shows no speaker: {seen} {errors}") from exc
        page_info = await page.evaluate(PROBE, [TILE, THRESHOLD])
        first = len(sent) + SETTLE // PERIOD + 1  # the page's lip sync has had a few readings
        await asyncio.sleep(SETTLE + seconds + 1.5)
        stop.set()
        await speaking
        await asyncio.sleep(1.0)  # the last event's way
        sent = sent[first:]
        got = await page.evaluate("() => window.hcAvsync")
        stats = await page.evaluate(STATS)
        page_info.update(
            frames=got["frames"],
            streams=got["streams"],
            errors=errors,
            sync=await page.evaluate("() => ({ ...HC.video.state.sync })"),
        )
        return Offsets(
            sync=sync,
            sent=sent,
            beeps=[b["at"] / 1000 for b in got["beeps"]],
            flashes=[f["at"] / 1000 for f in got["flashes"]],
            codec_delay=opus_delay(beep_packets(2 * PERIOD, skew), skew),
            skew=skew,
            page=page_info,
            stats=stats,
            load=os.getloadavg()[0],
        )
    finally:
        stop.set()
        if speaking is not None:
            speaking.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await speaking
        for peer in (mic, camera):
            if peer is not None:
                await peer.close()
        if page is not None:
            await page.context.close()
        await chair.close()
