"""The three channel pages in Chromium: interpreter console, listener, chair's booth board."""

from __future__ import annotations

from typing import Any

import pytest

from server.node.auth import Invites

from .audio_helpers import loopback_ice  # noqa: F401 (fixture: the console publishes a mic)
from .conftest import NodeFactory, timeout

ROOM = "plenary"


@pytest.mark.browser
@pytest.mark.usefixtures("loopback_ice")
async def test_interpreter_listener_and_chair_pages(
    start_node: NodeFactory, invites: Invites, browser: Any
) -> None:
    from playwright.async_api import expect

    node = await start_node()
    ms = int(timeout(5) * 1000)
    elena = invites.mint(
        room=ROOM, role="interpreter", name="Elena Ruiz", booth="es", pair=["en", "es"]
    )
    ana = invites.mint(room=ROOM, role="participant", name="Ana", lang="en")
    chair = invites.mint(room=ROOM, role="moderator", name="Chair")
    errors: list[str] = []
    pages = {}
    for who, token in (("elena", elena), ("ana", ana), ("chair", chair)):
        context = await browser.new_context()
        page = await context.new_page()
        page.on("pageerror", lambda exc, who=who: errors.append(f"{who}: {exc}"))
        await page.goto(node.node.link(token, ROOM))
        pages[who] = page
    console, listener, board = pages["elena"], pages["ana"], pages["chair"]

    # the interpreter takes the air with the keyboard alone (the microphone starts first)
    take = console.locator("#air-take")
    await expect(take).to_be_visible(timeout=ms)
    await take.focus()
    await console.keyboard.press("Enter")
    await expect(console.locator("#onair")).to_have_class("onair live", timeout=3 * ms)

    # the listener picks Spanish and sees who is interpreting
    await listener.locator("#channel-picker").select_option("es")
    await expect(listener.locator("#channel-live")).to_contain_text("Elena Ruiz", timeout=ms)

    # a caption typed on the console reaches the listener of that channel
    await console.locator("#booth-caption").fill("Buenos días a todos")
    await console.locator("#booth-caption").press("Enter")
    await expect(listener.locator("#captions")).to_contain_text("Buenos días a todos", timeout=ms)
    await expect(console.locator("#booth-caption")).to_have_value("", timeout=ms)

    # the chair's board: who is live in es, one listener
    row = board.locator('#booth-board tr[data-lang="es"]')
    await expect(row).to_contain_text("Elena Ruiz", timeout=ms)
    await expect(row.locator("td.num")).to_have_text("1", timeout=ms)

    # cough: hold F9 anywhere on the console; the board shows it while held
    await console.locator("body").click(position={"x": 5, "y": 5})
    await console.keyboard.down("F9")
    await expect(row).to_contain_text("muted (cough)", timeout=ms)
    await console.keyboard.up("F9")
    await expect(row).not_to_contain_text("muted (cough)", timeout=ms)

    # a preset from the booth is shown prominently to the chair
    await console.locator('button[data-preset="slow_down"]').click()
    await expect(board.locator("#booth-signal")).to_contain_text("Please slow down", timeout=ms)
    assert errors == [], errors
