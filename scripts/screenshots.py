"""Render every role's page (member, observer, interpreter, chair, panelist) at desktop and
phone size into docs/screenshots/, in the state the README shows (the vote open, an
interpreter on air, a panelist with the floor).

Run by scripts/screenshots.sh inside a loopback-only network namespace, like the tests: a
node on 127.0.0.1 with the memory backend and the demo assembly, the system Chromium, the
same scenes as tests/test_a11y.py (tests/scenes.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import uvicorn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.node.auth import Invites  # noqa: E402
from server.node.config import DEFAULT_CONFIG, Settings, load_assembly  # noqa: E402
from server.web.app import create_app  # noqa: E402
from tests.conftest import CHROMIUM, CHROMIUM_ARGS, SECRET, TestServer, free_port  # noqa: E402
from tests.scenes import PHONE, STATES, open_room, to_state  # noqa: E402


async def main(out: Path, state: str) -> None:
    from playwright.async_api import async_playwright

    port = free_port()
    settings = Settings(port=port, secret=SECRET, node="shots", reconnect_grace=0.0)
    app = create_app(settings, load_assembly(DEFAULT_CONFIG))
    server = TestServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    out.mkdir(parents=True, exist_ok=True)
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            async with open_room(browser, url, Invites(SECRET)) as room:
                await to_state(room, state)
                for size, viewport in (("desktop", None), ("phone", PHONE)):
                    for role, page in room.pages.items():
                        if viewport:
                            await page.set_viewport_size(viewport)
                            await page.evaluate("window.scrollTo(0, 0)")
                        await page.evaluate("new Promise((r) => requestAnimationFrame(r))")
                        path = out / f"{role}-{size}.png"
                        # Desktop: the whole page; phone: the first screen (what is in reach).
                        await page.screenshot(path=str(path), full_page=not viewport)
                        print(path)
                if room.errors:
                    raise SystemExit(f"page errors: {room.errors[:5]}")
            await browser.close()
    finally:
        server.should_exit = True
        await serving


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--state", choices=STATES, default="vote_open")
    args = parser.parse_args()
    asyncio.run(main(args.out, args.state))
