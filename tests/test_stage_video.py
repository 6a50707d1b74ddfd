"""The stage with real video: a sign interpreter's camera as its channel's source (aiortc), and
in Chromium with a fake camera whose frames carry a counter (their brightness): a member
sees the panelist's camera advance, the interpreter's speaker tile shows the speaker, a sign
channel viewer sees the signer, and a screen share reaches members and, stopped by the
chair, leaves every page.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from server.client import Client

from .audio_helpers import loopback_ice
from .conftest import CHROMIUM_ARGS, timeout
from .test_video_browser import counter_y4m
from .video_helpers import publish_camera, starts, view
from .waiting import eventually

pytestmark = pytest.mark.usefixtures(loopback_ice.__name__)


async def test_the_signer_on_air_publishes_the_sign_channel(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    sig1, sig2, ana = [
        await Client.connect(
            node.url,
            invites.mint(room="plenary", role=role, name=name, **({"booth": "ils"} if b else {})),
        )
        for name, role, b in (
            ("S1", "interpreter", True),
            ("S2", "interpreter", True),
            ("A", "participant", False),
        )
    ]
    refused = await publish_camera(sig1, expect_ok=False)
    assert refused.reply["code"] == "not_on_stage", "off air: no camera"
    await sig1.command("air.take")
    camera = await publish_camera(sig1)
    assert camera.source == "sign:ils", "a signer's camera is the channel's source"
    task = asyncio.create_task(camera.play(100_000))
    eye = await view(ana, tiles=1)
    await eye.show((0, "sign:ils", "m"))
    await eventually(
        lambda: len(starts(eye.on(0))), until=lambda n: n >= 10, message="the signer's frames"
    )
    # the handover: the old signer's camera is closed by the node, the new one publishes
    await sig2.command("handover.request")
    await sig1.command("handover.accept")
    closed = await sig1.wait_message(lambda m: m["type"] == "video.closed", timeout(5))
    assert closed["code"] == "not_on_stage"
    task.cancel()
    await camera.close()
    again = await publish_camera(sig2)
    assert again.source == "sign:ils"
    await again.close()
    await eye.close()
    for c in (sig1, sig2, ana):
        await c.close()


# --- Chromium -------------------------------------------------------------------------------


@pytest.fixture
def browser_args(tmp_path: Path) -> list[str]:
    clip = counter_y4m(tmp_path / "counter.y4m")
    return [
        *CHROMIUM_ARGS,
        f"--use-file-for-fake-video-capture={clip}",
        "--auto-accept-this-tab-capture",
        "--auto-select-desktop-capture-source=Entire screen",
    ]


def luma(selector: str) -> str:
    """JS: the mean brightness of the first <video> matching ``selector`` (the clip's counter)."""
    return f"""() => {{
  const v = document.querySelector("{selector}");
  if (!v || !v.videoWidth) return null;
  const c = document.createElement('canvas');
  c.width = 32; c.height = 18;
  const g = c.getContext('2d', {{ willReadFrequently: true }});
  g.drawImage(v, 0, 0, 32, 18);
  const d = g.getImageData(0, 0, 32, 18).data;
  let sum = 0;
  for (let i = 0; i < d.length; i += 4) sum += d[i + 1];
  return Math.round(sum / (d.length / 4));
}}"""


async def advancing(page: Any, selector: str, seconds: float = 15) -> set[int]:
    """Wait until the picture in ``selector`` has shown several counter values."""
    seen: set[int] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout(seconds)
    while len(seen) < 4:
        value = await page.evaluate(luma(selector))
        if value is not None:
            seen.add(value)
        if loop.time() > deadline:
            raise AssertionError(f"{selector}: the picture did not advance; seen {sorted(seen)}")
        await page.wait_for_timeout(100)
    return seen


async def open_page(browser: Any, url: str, token: str, size: tuple[int, int] = (1440, 900)) -> Any:
    page = await browser.new_page(viewport={"width": size[0], "height": size[1]})
    page.hc_errors = []
    page.on("pageerror", lambda exc: page.hc_errors.append(str(exc)))
    await page.goto(f"{url}/r/plenary#t={token}")
    await page.wait_for_function(
        "() => HC.connected && HC.video && HC.stage", timeout=timeout(5) * 1000
    )
    return page


async def until(page: Any, predicate: str, seconds: float = 10) -> None:
    await page.wait_for_function(predicate, timeout=timeout(seconds) * 1000)


@pytest.mark.browser
async def test_members_interpreters_and_sign_viewers_see_the_stage(  # type: ignore[no-untyped-def]
    start_node, invites, browser
) -> None:
    node = await start_node()
    chair = await Client.connect(node.url, invites.mint(room="plenary", role="moderator", name="C"))
    pan = await open_page(
        browser, node.url, invites.mint(room="plenary", role="panelist", name="Lucía")
    )
    pan_pid = await pan.evaluate("() => HC.you.pid")
    ana = await open_page(
        browser, node.url, invites.mint(room="plenary", role="participant", name="Ana")
    )
    ivan = await open_page(
        browser,
        node.url,
        invites.mint(room="plenary", role="interpreter", name="Ivan", booth="es"),
        (1366, 768),
    )
    sam = await open_page(
        browser,
        node.url,
        invites.mint(room="plenary", role="interpreter", name="Sam", booth="ils"),
        (1366, 768),
    )
    assert await pan.is_hidden("#stage-camera"), "off stage: no camera button"
    await chair.command("stage.add", {"pid": pan_pid})
    await chair.command("stage.pin", {"target": pan_pid})  # the interpreter's tile shows her
    await until(pan, "() => !document.querySelector('#stage-camera').hidden")
    await pan.click("#stage-camera")
    tile = f".tile[data-target='{pan_pid}']:not(.novideo) video"
    await advancing(ana, f"#stage-area {tile}")
    await advancing(ivan, f"#console-stage {tile}")

    # the sign channel: the signer takes the air and turns the camera on; Ana picks ILS
    await sam.click("#air-take")
    await until(sam, "() => !document.querySelector('#sign-camera').hidden")
    await sam.click("#sign-camera")
    await ana.select_option("#stage-sign-pick", "ils")
    await advancing(ana, ".stage-sign .tile:not(.novideo) video")
    shown = await ana.evaluate("() => HC.video.state.view.tiles.map(t => t.source)")
    assert set(shown) - {None} == {f"{pan_pid}:camera", "sign:ils"}, (
        f"last-N: only the tiles on screen are asked for: {shown}"
    )
    for page in (pan, ana, ivan, sam):
        assert page.hc_errors == [], page.hc_errors
    await chair.close()


@pytest.mark.browser
async def test_a_screen_share_reaches_members_and_the_chair_stops_it(  # type: ignore[no-untyped-def]
    start_node, invites, browser
) -> None:
    node = await start_node()
    chair = await open_page(
        browser, node.url, invites.mint(room="plenary", role="moderator", name="Chair")
    )
    pan = await open_page(
        browser, node.url, invites.mint(room="plenary", role="panelist", name="Lucía")
    )
    pan_pid = await pan.evaluate("() => HC.you.pid")
    ana = await open_page(
        browser, node.url, invites.mint(room="plenary", role="participant", name="Ana")
    )
    await until(
        chair, f"() => document.querySelector(\"#stage-add-pick option[value='{pan_pid}']\")"
    )
    await chair.select_option("#stage-add-pick", pan_pid)
    await chair.click("#stage-add")
    await until(pan, "() => !document.querySelector('#stage-share').hidden")
    await pan.click("#stage-share")
    await until(pan, "() => HC.state.stage.share !== null")
    screen = f"#stage-area .tile[data-source='{pan_pid}:screen']"
    await until(ana, f'() => document.querySelector("{screen}")')
    await until(
        ana,
        f'() => {{ const v = document.querySelector("{screen}:not(.novideo) video");'
        " return v && v.videoWidth > 0; }",
        15,
    )
    await until(chair, "() => !document.querySelector('#stage-stop-share').hidden")
    await chair.click("#stage-stop-share")
    for page in (chair, pan, ana):
        await until(page, f'() => !document.querySelector("{screen}")')
    await until(pan, "() => !HC.video.state.publishing.screen")
    for page in (chair, pan, ana):
        assert page.hc_errors == [], page.hc_errors
