"""Audio–video offset added by the node: one speaker's microphone and camera, one viewer.

What can be measured here, and what cannot. Chromium's fake devices give a tone and a test
pattern from two separate sources with no common clock, so a "flash with a beep" cannot be
made with them. An aiortc publisher can: it sends the floor microphone (Opus, 20 ms frames)
and the camera (VP8, 30 frames/s) from one clock, and a viewer (the interpreter's console
would be one) listens to the floor and shows the speaker's tile. Both run in this process,
so one monotonic clock times the send of every audio frame and video frame and the arrival
of every packet at the viewer, through the real node (WebSocket signalling, the audio
passthrough, the video forwarding). The offset the node adds is
``median(video latency) − median(audio latency)`` (a frame's latency: its first send to the
arrival of its last packet); positive means the picture comes later than the sound.

What this leaves out is the browser's part: audio and video arrive on two peer connections,
so Chromium cannot lip-sync them, and each waits in its own jitter buffer — ``--console``
measures it.

    unshare -r -n -- sh -c 'ip link set lo up && exec .venv/bin/python bench/avsync.py'

``--console`` measures the browser's share too: the same speaker's flash and beep, made at
one capture instant once a second, timed in the interpreter's console page in Chromium
(tests/avsync_console.py), with the page's lip sync off and on in turn:

    unshare -r -n -- sh -c 'ip link set lo up && exec .venv/bin/python bench/avsync.py \
        --console --runs 4 --seconds 12'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvicorn  # noqa: E402

from server.client import Client  # noqa: E402
from server.media import vp8  # noqa: E402
from server.node.auth import Invites  # noqa: E402
from server.node.config import Settings, load_assembly  # noqa: E402
from server.web.app import create_app  # noqa: E402
from tests.audio_helpers import listen, marker, opus_tone, publish, tagged  # noqa: E402
from tests.video_helpers import publish_camera, view  # noqa: E402

SECRET = "bench-secret-0123456789abcdefghijklmnopqrstuv"


class Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[str]:
    """A node on a free port of 127.0.0.1 (aiortc offering loopback candidates): its URL,
    until the block ends."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []
    port = free_port()
    settings = Settings(port=port, secret=SECRET, node="bench", reconnect_grace=0.0)
    app = create_app(settings, load_assembly("config/assembly.toml"))
    server = Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(seconds: float) -> None:
    async with serving() as url:
        await measure_node(url, seconds)


async def measure_node(url: str, seconds: float) -> None:
    """A chair's microphone and camera from one clock; an interpreter's client listens and
    views: the latency the node adds to each, and the offset between them."""
    invites = Invites(SECRET)
    chair = await Client.connect(url, invites.mint(room="plenary", role="moderator", name="C"))
    ivan = await Client.connect(
        url, invites.mint(room="plenary", role="interpreter", name="I", booth="es")
    )
    mic = await publish(chair, "floor")
    camera = await publish_camera(chair, "camera")
    ear = await listen(ivan)
    audio = tagged(opus_tone(440, int(seconds * 50) + 150), tag=7)
    sent_a: dict[int, float] = {}
    sent_v: dict[int, float] = {}
    state = {"a": 0, "v": 0}
    bodies: dict[bytes, list[int]] = {}
    """A packet's VP8 bytes past its descriptor → the frames that sent them (the node
    rewrites the descriptor, sequence numbers and timestamps, never these bytes)."""

    async def play(duration: float) -> None:
        """Microphone and camera from one clock: a frame each when its time has come."""
        start = time.monotonic()
        a0, v0 = state["a"], state["v"]
        while time.monotonic() - start < duration:
            now = time.monotonic() - start
            if now >= (state["a"] - a0) * 0.02:
                sent_a[state["a"]] = time.monotonic()
                mic.track.push(audio[state["a"]], mic.ts)
                mic.ts += 960
                state["a"] += 1
            if now >= (state["v"] - v0) / 30:
                sent_v[camera.frames] = time.monotonic()
                before = len(camera.sent)
                await camera.send_frame()
                for x in camera.sent[before:]:
                    if x.q == "h":
                        bodies.setdefault(x.payload[vp8.parse(x.payload).header :], []).append(
                            camera.frames - 1
                        )
                state["v"] += 1
            due = min((state["a"] - a0) * 0.02, (state["v"] - v0) / 30)
            await asyncio.sleep(max(0.0, due - (time.monotonic() - start)))

    await play(2.0)  # the camera flows (the node announces it), then the viewer shows it
    eye = await view(ivan, tiles=1)
    await eye.show((0, camera.source, "h"))
    await play(1.0)  # the viewer's first keyframe
    first_a, first_v = state["a"], camera.frames
    await play(seconds)
    await asyncio.sleep(1.0)  # the last packets' way
    all_v = dict(sent_v)
    sent_a = {n: t for n, t in sent_a.items() if n >= first_a}
    sent_v = {n: t for n, t in sent_v.items() if n >= first_v}
    a, v = len(sent_a), len(sent_v)

    lat_a = [
        h.at - sent_a[m[1]]
        for h in ear.on(0)
        if (m := marker(h.payload))[0] == 7 and m[1] in sent_a
    ]
    got = eye.on(0)
    last: dict[int, float] = {}
    if got:
        # The first packet's frame, from its bytes (the latest frame that sent them before it
        # arrived); the others by the viewer's timestamps, which keep the camera's steps.
        g0 = got[0]
        f0 = max(f for f in bodies[g0.payload[vp8.parse(g0.payload).header :]] if all_v[f] <= g0.at)
        for g in got:
            frame = f0 + ((g.ts - g0.ts) & 0xFFFFFFFF) // 3000
            last[frame] = max(last.get(frame, 0.0), g.at)
    lat_v = [at - sent_v[f] for f, at in last.items() if f in sent_v]
    await mic.close()
    await camera.close()
    await ear.close()
    await eye.close()
    for c in (chair, ivan):
        await c.close()

    load = os.getloadavg()[0]
    ms = 1000.0
    print(
        f"{seconds:.0f} s, load {load:.1f}: audio frames {len(lat_a)}/{a}, "
        f"video frames {len(lat_v)}/{v}"
    )
    print("| path | p50 | p95 | p99 |")
    print("|---|---|---|---|")
    for name, lat in (("audio (Opus frame)", lat_a), ("video (VP8 frame, last packet)", lat_v)):
        print(
            f"| {name} | {pct(lat, 0.5) * ms:.2f} ms | {pct(lat, 0.95) * ms:.2f} ms "
            f"| {pct(lat, 0.99) * ms:.2f} ms |"
        )
    offset = statistics.median(lat_v) - statistics.median(lat_a)
    print(f"offset added by the node (median video − median audio): {offset * ms:+.2f} ms")


async def console(seconds: int, runs: int, skew: float, sync: str) -> None:
    """The offset at the interpreter's console in Chromium (tests/avsync_console.py): runs
    alternate the page's lip sync off and on (``--sync both``), or keep one setting."""
    from playwright.async_api import async_playwright

    from tests.avsync_console import measure, table
    from tests.conftest import CHROMIUM, CHROMIUM_ARGS, only_loopback

    if not only_loopback():
        raise SystemExit("run it in a loopback-only namespace: unshare -r -n (see the docstring)")
    async with serving() as url:
        settings_of = {"both": (False, True), "on": (True,), "off": (False,)}[sync]
        results = []
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            for n in range(runs):
                on = settings_of[n % len(settings_of)]
                results.append(await measure(browser, url, Invites(SECRET), seconds, skew, on))
                print(table(results[-1:]).splitlines()[-1], flush=True)
            await browser.close()
    print(f"\n{seconds} s of events a run, skew {skew * 1000:+.0f} ms (the beep after the flash)")
    print(table(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--console",
        action="store_true",
        help="measure at the interpreter's console in Chromium (flash and beep)",
    )
    parser.add_argument("--runs", type=int, default=4, help="--console: runs")
    parser.add_argument(
        "--sync", choices=("both", "on", "off"), default="both", help="--console: lip sync"
    )
    parser.add_argument(
        "--skew", type=float, default=0.0, help="--console: the beep this many s after the flash"
    )
    args = parser.parse_args()
    if args.console:
        asyncio.run(console(int(args.seconds), args.runs, args.skew, args.sync))
    else:
        asyncio.run(run(args.seconds))


if __name__ == "__main__":
    main()
