"""The stage in Chromium, for the tests that drive it (test_video_browser, test_reach_lowband,
test_reach_turn): a page opened at a desktop size, the chair's camera published, a member's
tile playing."""

from __future__ import annotations

from typing import Any

from .conftest import timeout

READY = "HC.connected && HC.video && HC.stage"
"""A page whose stage is ready (a JavaScript expression)."""

CAMERA_UP = (
    "() => { const p = HC.video.state.publishing.camera;"
    " return p && p.pc.connectionState === 'connected'; }"
)
"""The page's camera is published: its connection to the node is up."""

TILE_PLAYS = (
    "() => { const v = document.querySelector('#stage-area .tile:not(.novideo) video');"
    " return v && v.videoWidth > 0 && v.currentTime > 0; }"
)
"""A tile of the page's stage plays a picture."""


async def open_page(
    browser: Any, url: str, token: str, *, width: int = 1440, ready: str = READY
) -> Any:
    """A page of the plenary at ``width`` × 900, once ``ready`` holds."""
    page = await browser.new_page(viewport={"width": width, "height": 900})
    page.on("pageerror", lambda exc: print("page error:", exc))
    await page.goto(f"{url}/r/plenary#t={token}")
    await page.wait_for_function(f"() => {ready}", timeout=timeout(5) * 1000)
    return page


async def camera_on(page: Any, seconds: float) -> None:
    """Turn the page's camera on and wait (``seconds``) until it is published."""
    await page.click("#stage-camera")
    await page.wait_for_function(CAMERA_UP, timeout=timeout(seconds) * 1000)


async def tile_plays(page: Any, seconds: float) -> None:
    await page.wait_for_function(TILE_PLAYS, timeout=timeout(seconds) * 1000)
