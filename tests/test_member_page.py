"""The member page in Chromium: the offline banner and actions taken offline, one control to
listen, the proxy's confirmation, the observer's label, and keyboard-only use (issue 11)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from server.client import Client
from server.node.auth import Invites

from .audio_helpers import loopback_ice  # noqa: F401 (fixture)
from .conftest import NodeFactory, timeout
from .reach_helpers import open_as
from .waiting import eventually

pytestmark = pytest.mark.browser
ROOM = "plenary"
VOTE = "strategic-framework"


class Link:
    """A loopback TCP forwarder standing for the network between the browser and the node.

    ``cut()`` makes the network go away the way Wi-Fi does: no close, no reset — bytes are
    swallowed both ways and new connections hang. (Playwright's ``set_offline`` does not cut
    an open WebSocket in every version.) ``restore()`` lets new connections through again
    and ends the dead ones."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.down = False
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def cut(self) -> None:
        self.down = True

    def restore(self) -> None:
        self.down = False
        for w in list(self.writers):
            w.close()
        self.writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:  # a connection into a dead network: accepted by no one, never answered
            self.writers.add(writer)
            with contextlib.suppress(ConnectionError):
                while await reader.read(65536):
                    pass
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    if not self.down:
                        dst.write(data)
                        await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def close(self) -> None:
        self.restore()
        if self.server is not None:
            self.server.close()


async def open_page(browser: Any, url: str, token: str, locale: str = "en-GB") -> Any:
    context = await browser.new_context(locale=locale, viewport={"width": 1440, "height": 900})
    page = await context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    # Chromium's own report of a failed socket (the network cut on purpose) is not a page error.
    page.on(
        "console",
        lambda m: (
            m.type == "error"
            and not m.text.startswith("WebSocket connection to")
            and page.errors.append(m.text)
        ),
    )
    await page.goto(f"{url}/r/{ROOM}#t={token}")
    await page.wait_for_function("() => window.HC && HC.state && HC.connected")
    return page


async def sokha(browser: Any, node: Any, invites: Invites) -> Any:
    """The page of APLE's representative, Sokha Chan (a member, who votes)."""
    return await open_as(
        browser, node, invites, "participant", "Sokha Chan", opener=open_page, org="aple-kh"
    )


async def tab_to(page: Any, selector: str, most: int = 80) -> None:
    """Press Tab until ``selector`` has the focus (keyboard only), or fail."""
    for _ in range(most):
        if await page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
        await page.keyboard.press("Tab")
    pytest.fail(f"{selector} not reached with {most} Tabs")


async def test_offline_banner_and_a_hand_raised_offline(
    start_node: NodeFactory, invites: Invites, browser: Any
) -> None:
    node = await start_node()
    link = Link(node.port)
    base = await link.start()
    token = invites.mint(room=ROOM, role="participant", name="Sokha Chan", org="aple-kh")
    chair = await Client.connect(node.url, invites.mint(room=ROOM, role="moderator", name="C"))
    try:
        page = await open_page(browser, base, token)
        pid = await page.evaluate("HC.you.pid")
        hub = node.node.hubs[ROOM]
        banner = page.locator("#offline")
        assert await banner.is_hidden()
        await chair.wait_for(lambda s: s["polls"]["polls"][VOTE].get("keys"), timeout=timeout(10))
        await chair.command("poll.open", {"poll": VOTE})
        card = page.locator(f"#poll-{VOTE}")
        await card.locator("input[value=no]").check(timeout=timeout(10) * 1000)
        await card.get_by_role("button", name="Cast ballot").click()

        link.cut()
        # Nothing closes the socket: only the heartbeat can tell. The banner within 5 s.
        await banner.wait_for(state="visible", timeout=timeout(5) * 1000)
        assert await page.locator("#status").text_content() == "Offline"
        assert "You are offline" in (await banner.text_content() or "")

        # A hand raised offline is shown as waiting, and does not reach the node yet.
        await page.get_by_role("button", name="Raise hand").click()
        await page.locator("#hand-pending").get_by_text("Waiting to be sent").wait_for()
        await banner.get_by_text("Waiting to be sent: raise hand").wait_for()
        assert pid not in hub.state["core"]["hands"]
        # A ballot confirmed offline says it waits on this device, not "Casting…".
        await card.get_by_role("button", name="Confirm my ballot").click()
        await card.get_by_text("You are offline: your ballot is kept sealed").wait_for()
        assert hub.state["polls"]["polls"][VOTE]["voted"] == {}  # not even claimed

        link.restore()
        await page.wait_for_function("() => HC.status === 'connected'", timeout=timeout(15) * 1000)
        await eventually(lambda: pid in hub.state["core"]["hands"], message="the hand arrives")
        await page.get_by_role("button", name="Lower hand").wait_for(timeout=timeout(5) * 1000)
        await page.locator("#toasts").get_by_text("Back online — sent: raise hand").wait_for()
        assert await banner.is_hidden()
        assert await page.locator("#hand-pending").is_hidden()
        # The ballot went too: claimed, sealed, in the box, with its tracker.
        await card.locator(".receipt code").wait_for(timeout=timeout(10) * 1000)
        await eventually(
            lambda: hub.state["polls"]["polls"][VOTE]["ballots"], message="the sealed ballot"
        )
        assert page.errors == [], page.errors
    finally:
        await chair.close()
        await link.close()


async def test_a_proxy_needs_a_confirmation_naming_the_member(
    start_node: NodeFactory, invites: Invites, browser: Any
) -> None:
    node = await start_node()
    hub = node.node.hubs[ROOM]
    page = await sokha(browser, node, invites)
    box = page.locator("#polls-proxy .proxy")
    # No member is preselected: "Give proxy" alone gives nothing away.
    assert await box.locator("#proxy-to").input_value() == ""
    await box.get_by_role("button", name="Give proxy").click()
    await page.locator("#toasts").get_by_text("Choose a member first.").wait_for()
    assert hub.state["polls"]["proxies"] == {}

    await box.get_by_label("Give our vote to").select_option("mais-do")
    await box.get_by_role("button", name="Give proxy").click()
    question = box.locator("#proxy-question")
    await question.get_by_text(
        "Give the vote of APLE to MAIS in formal votes, until you revoke it?"
    ).wait_for()
    assert hub.state["polls"]["proxies"] == {}  # asked, not given
    # "Back" keeps everything as it was.
    await box.get_by_role("button", name="Back").click()
    await box.locator("#proxy-to").wait_for()
    assert hub.state["polls"]["proxies"] == {}

    await box.get_by_label("Give our vote to").select_option("mais-do")
    await box.get_by_role("button", name="Give proxy").click()
    await box.get_by_role("button", name="Yes, give our vote to MAIS").click()
    await eventually(
        lambda: hub.state["polls"]["proxies"] == {"aple-kh": "mais-do"}, message="the proxy"
    )
    await box.get_by_text("Our vote is delegated to MAIS.").wait_for()
    await box.get_by_text("You can revoke it until a formal vote opens.").wait_for()
    # Focus went to what changed: the revoke button.
    await page.wait_for_function("() => document.activeElement.id === 'proxy-revoke'")

    # The chair opens the formal vote: the proxy box goes away for the whole vote.
    chair = await Client.connect(node.url, invites.mint(room=ROOM, role="moderator", name="C"))
    try:
        await chair.wait_for(lambda s: s["polls"]["polls"][VOTE].get("keys"), timeout=timeout(10))
        await chair.command("poll.open", {"poll": VOTE})
        card = page.locator(f"#poll-{VOTE}")
        await card.get_by_text("This vote is delegated to MAIS.").wait_for()
        await box.wait_for(state="detached")
        assert await page.locator("#proxy-revoke").count() == 0
        await chair.command("poll.close", {"poll": VOTE})
        await page.locator(f"#poll-{VOTE} .badge.state-closed").wait_for()
        # After the vote the standing proxy is shown again, to be revoked for the next one.
        await page.get_by_role("button", name="Revoke proxy").click()
        await eventually(lambda: hub.state["polls"]["proxies"] == {}, message="revoked")
        await box.wait_for(state="detached")  # nothing stands now
    finally:
        await chair.close()
    assert page.errors == [], page.errors


async def test_the_observer_is_labelled_and_told_they_do_not_vote(
    start_node: NodeFactory, invites: Invites, browser: Any
) -> None:
    node = await start_node()
    page = await open_page(
        browser,
        node.url,
        invites.mint(room=ROOM, role="observer", name="Olga Petrova", lang="fr"),
        locale="fr-FR",
    )
    await page.locator("#you-badge").get_by_text("Olga Petrova · Observateur").wait_for()
    note = page.locator("#observer-note")
    await note.get_by_text("vous ne votez pas").wait_for()
    assert await page.locator("#hand-button").is_hidden()
    assert await page.locator("#polls-proxy .proxy").count() == 0
    assert "Participant" not in (await page.locator("header").text_content() or "")
    assert page.errors == [], page.errors


@pytest.mark.usefixtures("loopback_ice")
async def test_keyboard_only_a_member_listens_raises_a_hand_and_votes(
    start_node: NodeFactory, invites: Invites, browser: Any
) -> None:
    node = await start_node()
    hub = node.node.hubs[ROOM]
    page = await sokha(browser, node, invites)
    pid = await page.evaluate("HC.you.pid")
    await page.locator("body").focus()

    # One control: picking Spanish with the arrow keys starts the audio in Spanish.
    await tab_to(page, "#channel-picker")
    for _ in range(4):
        if await page.evaluate("document.activeElement.value") == "es":
            break
        await page.keyboard.press("ArrowDown")
    await eventually(lambda: hub.state["channels"]["choice"].get(pid) == "es", message="es")
    await page.wait_for_function(
        "() => HC.audio.wantListen && HC.audio.pc && HC.audio.pc.connectionState === 'connected'",
        timeout=timeout(15) * 1000,
    )
    await page.get_by_role("button", name="Stop listening").wait_for()
    await page.locator("#hearing").get_by_text("You hear:").wait_for(timeout=timeout(5) * 1000)

    # Raise a hand with Enter.
    await tab_to(page, "#hand-button")
    await page.keyboard.press("Enter")
    await eventually(lambda: pid in hub.state["core"]["hands"], message="the hand")

    # Cast the formal vote's ballot: Space on an option, Tab, Enter; Enter to confirm.
    chair = await Client.connect(node.url, invites.mint(room=ROOM, role="moderator", name="C"))
    try:
        await chair.wait_for(lambda s: s["polls"]["polls"][VOTE].get("keys"), timeout=timeout(10))
        await chair.command("poll.open", {"poll": VOTE})
        card = page.locator(f"#poll-{VOTE}")
        await card.locator("input[value=yes]").wait_for()
        await tab_to(page, f"#poll-{VOTE} input[value=yes]")
        await page.keyboard.press("Space")
        await page.keyboard.press("Tab")
        await page.keyboard.press("Enter")
        await page.wait_for_function("() => document.activeElement.id.startsWith('confirm-')")
        await page.keyboard.press("Enter")
        await card.locator(".receipt code").wait_for(timeout=timeout(10) * 1000)
        # The waiting state says what happens next.
        waits = card.locator(".box-waits")
        await waits.get_by_text("stays sealed until the vote closes").wait_for()
        await eventually(
            lambda: hub.state["polls"]["polls"][VOTE]["ballots"], message="a sealed ballot"
        )
    finally:
        await chair.close()
    assert page.errors == [], page.errors
