"""The browser's part of the audio–video offset at the interpreter's page (Chromium).

bench/avsync.py measures what the node adds (one clock, aiortc on both ends). Here an aiortc
speaker (the chair: floor microphone and camera from one clock) is heard and seen by an
interpreter's page in Chromium, and the page's own WebRTC statistics say how long each
stream waits before it is played: the audio track's jitter buffer, the video track's jitter
buffer plus its decode. The floor audio and the speaker's video come on two peer connections,
so Chromium does not lip-sync them; the difference of those waits is the offset the page
adds. (A flash-and-beep end to end cannot come from Chromium's separate fake devices.)

    unshare -r -n -- sh -c 'ip link set lo up && exec .venv/bin/python bench/avsync_page.py'
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.avsync import SECRET, Server, free_port  # noqa: E402

STATS = """async () => {
  const one = async (pc, kind) => {
    const out = {};
    (await pc.getStats()).forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === kind && r.jitterBufferEmittedCount) {
        out.jb = 1000 * r.jitterBufferDelay / r.jitterBufferEmittedCount;
        out.target = 1000 * (r.jitterBufferTargetDelay || 0) / r.jitterBufferEmittedCount;
        if (r.framesDecoded) out.decode = 1000 * r.totalDecodeTime / r.framesDecoded;
        out.count = r.jitterBufferEmittedCount;
      }
    });
    return out;
  };
  return { audio: await one(HC.audio.pc, 'audio'),
           video: await one(HC.video.state.view.pc, 'video') };
}"""


async def run(seconds: float) -> None:
    import aioice.ice
    import uvicorn
    from playwright.async_api import async_playwright

    from server.client import Client
    from server.node.auth import Invites
    from server.node.config import Settings, load_assembly
    from server.web.app import create_app
    from tests.audio_helpers import opus_tone, publish
    from tests.conftest import CHROMIUM, CHROMIUM_ARGS
    from tests.video_helpers import publish_camera

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []
    port = free_port()
    settings = Settings(port=port, secret=SECRET, node="bench", reconnect_grace=0.0)
    app = create_app(settings, load_assembly("config/assembly.toml"))
    server = Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    invites = Invites(SECRET)
    chair = await Client.connect(url, invites.mint(room="plenary", role="moderator", name="C"))
    mic = await publish(chair, "floor")
    camera = await publish_camera(chair, "camera")
    tone = opus_tone(440, 50)

    async def speak() -> None:
        start = asyncio.get_running_loop().time()
        a = v = 0
        while True:
            now = asyncio.get_running_loop().time() - start
            if now >= a * 0.02:
                mic.track.push(tone[a % len(tone)], mic.ts)
                mic.ts += 960
                a += 1
            if now >= v / 30:
                await camera.send_frame()
                v += 1
            due = min(a * 0.02, v / 30)
            await asyncio.sleep(max(0.0, due - (asyncio.get_running_loop().time() - start)))

    speaking = asyncio.create_task(speak())
    token = invites.mint(room="plenary", role="interpreter", name="Ivan", booth="es")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1366, "height": 768})
        await page.goto(f"{url}/r/plenary#t={token}")
        await page.wait_for_function("() => HC.connected && HC.stage && HC.audio", timeout=10_000)
        await page.click("#listen-button")
        await page.wait_for_function(
            "() => HC.audio.pc && HC.audio.pc.connectionState === 'connected'"
            " && HC.video.state.view && document.querySelector('#speaker-section video')"
            " && document.querySelector('#speaker-section video').videoWidth > 0",
            timeout=20_000,
        )
        await page.wait_for_timeout(int(seconds * 1000))
        stats = await page.evaluate(STATS)
        await browser.close()
    speaking.cancel()
    await mic.close()
    await camera.close()
    await chair.close()
    server.should_exit = True
    await task
    a, v = stats["audio"], stats["video"]
    print(f"after {seconds:.0f} s, load {os.getloadavg()[0]:.1f}:")
    print(f"audio: jitter buffer {a['jb']:.1f} ms (target {a['target']:.1f} ms)")
    print(
        f"video: jitter buffer {v['jb']:.1f} ms (target {v['target']:.1f} ms), "
        f"decode {v.get('decode', 0):.1f} ms"
    )
    offset = v["jb"] + v.get("decode", 0) - a["jb"]
    print(f"offset the page adds (video waits − audio waits): {offset:+.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    asyncio.run(run(parser.parse_args().seconds))


if __name__ == "__main__":
    main()
