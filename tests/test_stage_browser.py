"""Chromium: the stage on the room page — the chair's controls, a member's view, a local pin
by mouse and by keyboard, the sign-language picker, axe-core on the stage section.

Video itself is tested in test_stage_video.py; here the tiles show names (what a page shows
before a camera's first frame) and everything the room state decides.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from server.client import Client

from .audio_helpers import loopback_ice, opus_tone, publish
from .conftest import timeout

pytestmark = pytest.mark.browser

MAIN = "document.querySelector(\"#stage-area .tile[data-role='main']\")"
"""The large tile (JS)."""
SHOTS = os.environ.get("HC_SHOTS")
"""A directory to keep screenshots in (for looking at them); unset: none are kept."""


async def open_page(browser: Any, url: str, token: str, size: tuple[int, int]) -> Any:
    page = await browser.new_page(viewport={"width": size[0], "height": size[1]})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.hc_errors = errors
    await page.goto(f"{url}/r/plenary#t={token}")
    await page.wait_for_function("() => HC.connected && HC.stage", timeout=timeout(5) * 1000)
    return page


async def until(page: Any, predicate: str, seconds: float = 5) -> None:
    await page.wait_for_function(predicate, timeout=timeout(seconds) * 1000)


async def shot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=f"{SHOTS}/{name}.png")


async def test_the_chair_builds_the_stage_and_a_member_sees_it(  # type: ignore[no-untyped-def]
    start_node, invites, browser
) -> None:
    node = await start_node()
    chair = await open_page(
        browser, node.url, invites.mint(room="plenary", role="moderator", name="Chair"), (1440, 900)
    )
    pan = await open_page(
        browser,
        node.url,
        invites.mint(room="plenary", role="panelist", name="Lucía Pérez", country="DO"),
        (1440, 900),
    )
    ana = await open_page(
        browser,
        node.url,
        invites.mint(room="plenary", role="participant", name="Sokha Chan", lang="fr"),
        (390, 844),
    )
    pan_pid = await pan.evaluate("() => HC.you.pid")
    chair_pid = await chair.evaluate("() => HC.you.pid")

    # the chair is on stage from the start; the member sees a tile with the chair's name
    await until(ana, "() => document.querySelectorAll('#stage-area .tile').length === 1")
    assert await ana.text_content("#stage-area .tile figcaption") == "Chair"

    # the chair puts the panelist on stage with the controls
    option = f"#stage-add-pick option[value='{pan_pid}']"
    await until(chair, f'() => document.querySelector("{option}")')
    await chair.select_option("#stage-add-pick", pan_pid)
    await chair.click("#stage-add")
    await until(ana, "() => document.querySelectorAll('#stage-area .tile').length === 2")
    names = await ana.eval_on_selector_all(
        "#stage-area figcaption", "els => els.map(e => e.textContent)"
    )
    assert sorted(names) == ["Chair", "Lucía Pérez"]
    # the panelist may now share a screen (the button shows once the video module is there)
    assert await pan.evaluate(f"() => HC.stage.publishers(HC.state)['{pan_pid}'].has('camera')")

    # the layout is the chair's, for everyone
    await chair.select_option("#stage-layout", "grid")
    await until(ana, "() => document.querySelector('#stage-area .stage').dataset.layout === 'grid'")

    # a member pins the panelist for themselves by clicking; the grid turns into speaker + strip
    await ana.click(f"#stage-area .tile[data-target='{pan_pid}']")
    await until(ana, f"() => {MAIN}?.dataset.target === '{pan_pid}'")
    assert await ana.get_attribute(f".tile[data-target='{pan_pid}']", "aria-pressed") == "true"
    assert (
        await chair.evaluate("() => document.querySelector('#stage-area .stage').dataset.layout")
        == "grid"
    ), "a local pin is nobody else's"
    await shot(ana, "member-390-pinned")

    # … and unpins with the keyboard only: Tab to the tile, Enter
    await ana.focus(f".tile[data-target='{pan_pid}']")
    await ana.keyboard.press("Enter")
    await until(ana, "() => document.querySelector('#stage-area .stage').dataset.layout === 'grid'")
    await ana.focus(f".tile[data-target='{chair_pid}']")
    await ana.keyboard.press(" ")
    await until(ana, f"() => HC.stage.view.pin === '{chair_pid}'")

    # the chair pins the panelist for everyone: a member without a pin of their own sees it
    await ana.keyboard.press(" ")
    await chair.select_option("#stage-pin-all", pan_pid)
    await until(ana, f"() => {MAIN}?.dataset.target === '{pan_pid}'")
    assert "Lucía Pérez" in (await ana.text_content("#stage-pin") or "")

    # removing the panelist drops the pin everywhere
    await chair.click("#stage-panel button")
    await until(ana, "() => document.querySelectorAll('#stage-area .tile').length === 1")
    await until(chair, "() => HC.state.stage.pin === null")
    await shot(chair, "chair-1440")
    await shot(pan, "panelist-1440")
    for page in (chair, pan, ana):
        assert page.hc_errors == [], page.hc_errors


async def test_a_viewer_picks_the_sign_channel_and_its_size(  # type: ignore[no-untyped-def]
    start_node, invites, browser
) -> None:
    node = await start_node()
    ana = await open_page(
        browser, node.url, invites.mint(room="plenary", role="participant", name="Ana"), (1440, 900)
    )
    signer = invites.mint(room="plenary", role="interpreter", name="Sam Signer", booth="ils")
    sam = await open_page(browser, node.url, signer, (1366, 768))
    assert await sam.evaluate("() => HC.state.channels.sign") == ["ils"]
    await until(sam, "() => document.querySelector('#sign-status').textContent.includes('Take')")
    options = await ana.eval_on_selector_all(
        "#channel-picker option", "els => els.map(e => e.value)"
    )
    assert "ils" not in options, "a sign channel is not in the listening picker"
    await ana.select_option("#stage-sign-pick", "ils")
    await until(ana, "() => !document.querySelector('.stage-sign').hidden")
    assert "no signer on air" in (await ana.text_content(".stage-sign figcaption") or "")
    await sam.click("#air-take")
    await until(sam, "() => document.querySelector('#sign-status').textContent.includes('on air')")
    await until(
        ana,
        "() => document.querySelector('.stage-sign figcaption').textContent.includes('Sam Signer')",
    )
    await ana.select_option("#stage-sign-size", "large")
    await until(ana, "() => document.querySelector('.stage-sign').dataset.size === 'large'")
    assert await ana.evaluate("() => localStorage.getItem('hc.sign.size')") == "large"
    await shot(ana, "member-1440-sign")

    from axe_playwright_python.async_playwright import Axe

    results = await Axe().run(ana, context="#stage-section")
    serious = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert serious == [], [(v["id"], v["help"]) for v in serious]
    await shot(sam, "signer-1366")
    assert ana.hc_errors == [] and sam.hc_errors == [], (ana.hc_errors, sam.hc_errors)


@pytest.mark.usefixtures(loopback_ice.__name__)
async def test_the_interpreter_sees_the_speaker_the_floor_carries(  # type: ignore[no-untyped-def]
    start_node, invites, browser
) -> None:
    node = await start_node()
    chair = await Client.connect(node.url, invites.mint(room="plenary", role="moderator", name="C"))
    ivan = await open_page(
        browser,
        node.url,
        invites.mint(room="plenary", role="interpreter", name="Ivan", booth="es"),
        (1366, 768),
    )
    tile = "#console-stage .tile[data-role='main']"
    await until(ivan, f"() => document.querySelector(\"{tile}\")?.dataset.target === '{chair.me}'")
    bo = await Client.connect(node.url, invites.mint(room="plenary", role="participant", name="Bo"))
    await chair.command("floor.grant", {"pid": bo.me})
    # the console listens to the floor as soon as it opens
    await until(ivan, "() => HC.audio.pc && HC.audio.pc.connectionState === 'connected'", 10)
    # the chair interjects without the floor: every page names the voice it hears
    chair_mic = await publish(chair, "floor")
    await chair_mic.play(opus_tone(300, 150))
    await until(
        ivan, "() => document.getElementById('speaking-line').textContent.startsWith('Speaking: C')"
    )
    assert "Has the floor: Bo" in (await ivan.text_content("#speaking-line") or "")
    await chair_mic.close()
    mic = await publish(bo, "floor")
    await mic.play(opus_tone(300, 150))  # 3 s of Bo on the floor
    await until(ivan, f"() => document.querySelector(\"{tile}\")?.dataset.target === '{bo.me}'")
    assert await ivan.text_content(f"{tile} figcaption") == "Bo"
    await shot(ivan, "interpreter-1366")
    await mic.close()
    for c in (chair, bo):
        await c.close()
    assert ivan.hc_errors == [], ivan.hc_errors
