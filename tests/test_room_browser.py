"""The room page in Chromium: joining from links, hands and the floor, time zones, language."""

from __future__ import annotations

from typing import Any

import pytest

from server.node.auth import Invites

from .conftest import NodeFactory, timeout

ROOM = "plenary"


@pytest.mark.browser
async def test_hands_floor_time_zones_and_language(
    start_node: NodeFactory, invites: Invites, browser: Any
) -> None:
    from playwright.async_api import expect

    node = await start_node()
    ms = int(timeout(5) * 1000)
    errors: list[str] = []

    async def open_page(token: str, **context: Any) -> Any:
        ctx = await browser.new_context(**context)
        page = await ctx.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(node.node.link(token, ROOM))
        return page

    # Sokha in Phnom Penh (UTC+7), browser in English; the chair in Santo Domingo (UTC-4).
    sokha_token = invites.mint(
        room=ROOM, role="participant", name="Sokha Chan", org="aple-kh", country="KH"
    )
    sokha = await open_page(
        sokha_token,
        timezone_id="Asia/Phnom_Penh",
        locale="en-GB",
    )
    chair = await open_page(
        invites.mint(room=ROOM, role="moderator", name="Chair"),
        timezone_id="America/Santo_Domingo",
        locale="en-US",
    )

    # Both see each other, with role, organisation and country.
    await expect(chair.locator("#people-list")).to_contain_text("Sokha Chan", timeout=ms)
    await expect(chair.locator("#people-list")).to_contain_text("APLE, Cambodia", timeout=ms)
    await expect(sokha.locator("#people-list")).to_contain_text("Chair", timeout=ms)

    # The agenda's first item starts 12:00 UTC: 19:00 in Phnom Penh, 08:00 in Santo Domingo.
    first = sokha.locator("#agenda-list li").first
    await expect(first.locator("time.local")).to_contain_text("19:00", timeout=ms)
    await expect(first.locator(".utc")).to_contain_text("12:00")
    await expect(chair.locator("#agenda-list li").first.locator("time.local")).to_contain_text(
        "08:00", timeout=ms
    )

    # Sokha raises a hand; the chair sees the queue and gives the floor.
    await sokha.get_by_role("button", name="Raise hand").click()
    await expect(sokha.get_by_role("button", name="Lower hand")).to_be_visible(timeout=ms)
    hand = chair.locator("#hands-list li", has_text="Sokha Chan")
    await expect(hand).to_be_visible(timeout=ms)
    await hand.get_by_role("button", name="Give the floor").click()
    await expect(sokha.locator("#you-speak")).to_be_visible(timeout=ms)
    await expect(chair.locator("#speakers-list")).to_contain_text("Sokha Chan", timeout=ms)
    await expect(chair.locator("#hands-list")).to_contain_text("No hands raised", timeout=ms)

    # Sokha switches the page to Spanish: labels change, times stay hers.
    await sokha.locator("#ui-lang").select_option("es")
    await expect(sokha.locator("#agenda-h")).to_have_text("Orden del día", timeout=ms)
    await expect(sokha.get_by_role("button", name="Terminar de hablar")).to_be_visible()
    await expect(sokha.locator("#agenda-list li").first).to_contain_text("Apertura y bienvenida")

    # The chair advances the agenda; the socket drops and the page resumes by itself.
    await sokha.evaluate("HC.dropForTest()")
    await chair.get_by_role("button", name="Next item").click()
    await chair.locator("#notice-form input").fill("Break in five minutes")
    await chair.locator("#notice-form button").click()
    await expect(sokha.locator("#notice")).to_have_text("Break in five minutes", timeout=ms)
    await expect(sokha.locator("#agenda-list li.current")).to_contain_text("Apertura", timeout=ms)
    await expect(sokha.locator("#status")).to_have_text("Conectado", timeout=ms)
    # A participant has no chair controls.
    await expect(sokha.locator("#notice-form")).to_be_hidden()
    await expect(sokha.locator("#agenda-next")).to_be_hidden()

    # Sokha opens a second tab, then closes it: the chair's copy of the people (applied from
    # person.joined / person.left) is the node's, record for record.
    def people() -> Any:
        return node.node.hubs[ROOM].state["core"]["people"]

    pid = await sokha.evaluate("HC.you.pid")
    tab = await open_page(sokha_token)
    has = "(n) => (HC.state.core.people[{pid!r}] || {{conns: []}}).conns.length === n"
    await chair.wait_for_function(has.format(pid=pid), arg=2, timeout=ms)
    assert await chair.evaluate("HC.state.core.people") == people()
    await tab.context.close()
    await chair.wait_for_function(has.format(pid=pid), arg=1, timeout=ms)
    assert await chair.evaluate("HC.state.core.people") == people()
    assert errors == []
