"""The interpreter console in Chromium, keyboard only (static/booth.js, issue 11).

Two interpreters of the Spanish booth and a member who listens to Spanish, on one node, with
Chromium's fake microphone playing a 440 Hz tone: taking the air starts the microphone and
the member hears it; focus never drops to <body> (after taking the air, after a handover,
while the meters move); the partner's Accept gets focus and a cue; the cough key mutes.
Without a microphone the air is never asked for; silence on air is flagged after 3 s.
axe-core finds no WCAG 2.2 AA violation on the console idle and on air. Set
HC_SCREENSHOTS=dir to keep screenshots at 1366×768 and 390×844.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from .audio_helpers import loopback_ice  # noqa: F401 (fixture)
from .conftest import CHROMIUM, CHROMIUM_ARGS, only_loopback, timeout
from .test_audio_browser import TONE, flowing, tone_wav, wait_peak
from .waiting import eventually

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("loopback_ice")]
ROOM = "plenary"
DESKTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]


@pytest.fixture
def browser_args(tmp_path: Path) -> list[str]:
    wav = tone_wav(tmp_path / "tone.wav", TONE)
    return [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}"]


def ms(seconds: float) -> int:
    return int(timeout(seconds) * 1000)


async def open_console(browser: Any, url: str, token: str, errors: list[str], **kw: Any) -> Any:
    context = await browser.new_context(viewport=DESKTOP, **kw)
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on(
        "console",
        lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None,
    )
    await page.goto(f"{url}/r/{ROOM}#t={token}")
    await page.wait_for_function(
        "() => HC.connected && document.getElementById('booth-console')"
        " && !document.getElementById('booth-console').classList.contains('empty')",
        timeout=ms(10),
    )
    return page


async def focused(page: Any) -> str:
    return str(
        await page.evaluate("() => document.activeElement.id || document.activeElement.tagName")
    )


async def wait_focus(page: Any, element_id: str, seconds: float = 10) -> None:
    await page.wait_for_function(
        f"() => document.activeElement && document.activeElement.id === {element_id!r}",
        timeout=ms(seconds),
    )


async def axe_violations(page: Any) -> list[dict[str, Any]]:
    from axe_playwright_python.async_playwright import Axe

    results = await Axe().run(
        page, options={"runOnly": {"type": "tag", "values": WCAG}, "resultTypes": ["violations"]}
    )
    return [
        {"id": v["id"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in results.response["violations"]
    ]


async def shoot(page: Any, name: str) -> None:
    folder = os.environ.get("HC_SCREENSHOTS")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        await page.set_viewport_size(size)
        await page.wait_for_timeout(300)  # a frame for the layout; only for the picture
        await page.screenshot(path=f"{folder}/console-{name}-{label}.png")
    await page.set_viewport_size(DESKTOP)


async def no_sideways_scroll(page: Any) -> None:
    await page.set_viewport_size(PHONE)
    width = await page.evaluate("() => document.documentElement.scrollWidth")
    take_bottom = await page.evaluate(
        "() => { const b = [...document.querySelectorAll('.console-actions button')]"
        ".find((x) => !x.hidden); return b ? b.getBoundingClientRect().bottom : null; }"
    )
    await page.set_viewport_size(DESKTOP)
    assert width <= PHONE["width"], f"the console scrolls sideways on a phone ({width} px)"
    assert take_bottom is not None and take_bottom <= PHONE["height"], (
        f"the air control is below the first screen on a phone (bottom at {take_bottom} px)"
    )


async def test_keyboard_only_take_hand_over_accept_cough(start_node, invites, browser) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    errors: list[str] = []
    elena = await open_console(
        browser,
        node.url,
        invites.mint(
            room=ROOM, role="interpreter", name="Elena Ruiz", booth="es", pair=["en", "es"]
        ),
        errors,
    )
    emilio = await open_console(
        browser,
        node.url,
        invites.mint(
            room=ROOM, role="interpreter", name="Emilio Soto", booth="es", pair=["en", "es"]
        ),
        errors,
    )
    member = await (await browser.new_context()).new_page()
    await member.goto(
        f"{node.url}/r/{ROOM}#t="
        + invites.mint(room=ROOM, role="participant", name="Ana", lang="es")
    )
    await member.wait_for_function(
        "() => HC.connected && HC.audio && HC.audio.els.main", timeout=ms(10)
    )

    # The floor plays as soon as the console opens, before any key is pressed.
    await elena.wait_for_function(
        "() => HC.audio.pc && HC.audio.pc.connectionState === 'connected'", timeout=ms(10)
    )
    assert await elena.text_content("#console-hearing") == "You hear: Floor (English)"
    assert await elena.is_hidden("#audio-section"), "one set of audio controls: the console's"
    keys = await elena.evaluate(
        "() => [...document.querySelectorAll('[aria-keyshortcuts]')]"
        ".map((e) => e.getAttribute('aria-keyshortcuts'))"
    )
    assert len(keys) == len(set(keys)) and len(keys) >= 11, f"shortcuts not unique: {keys}"
    assert await elena.evaluate("document.querySelectorAll('[accesskey]').length") == 0
    assert "Alt+T take the air" in (await elena.text_content("#console-keys") or "")
    assert await elena.get_attribute("#onair", "data-state") == "off"
    violations = await axe_violations(elena)
    assert violations == [], f"axe on the idle console: {violations}"
    await no_sideways_scroll(elena)
    await shoot(elena, "idle")

    # Elena takes the air with its shortcut: the microphone starts, then the air.
    await elena.keyboard.press("Alt+t")
    await elena.wait_for_function(
        "() => document.getElementById('onair').dataset.state === 'live'", timeout=ms(15)
    )
    assert await elena.evaluate("HC.audio.publishing()"), "ON AIR shown without a microphone"
    await wait_focus(elena, "handover-offer")
    await elena.wait_for_function(
        "() => document.getElementById('console-mic-meter').value > 0", timeout=ms(5)
    )
    assert not await elena.is_hidden("#air-time")

    # The member picks Spanish and hears Elena's microphone.
    # Picking the channel starts the audio (the member page has one Listen control).
    await member.locator("#channel-picker").select_option("es")
    await member.wait_for_function(
        "() => HC.audio.pc && HC.audio.pc.connectionState === 'connected' && HC.audio.analyser",
        timeout=ms(10),
    )
    await flowing(member, True)
    await wait_peak(member, True, 10)

    # Emilio, off air, has Elena underneath: the node routes the es channel to his under track.
    audio_room = node.node.feature["audio"].rooms[ROOM]
    emilio_pid = await emilio.evaluate("HC.you.pid")

    def emilio_under() -> str | None:
        for listener in audio_room.signalling.listeners():
            if listener.peer.person["pid"] == emilio_pid and listener.under:
                source = listener.under[0].source  # lane 1 of the under group
                return source.name if source is not None else None
        return None

    await eventually(
        emilio_under, until=lambda s: s == "es", message="Elena under Emilio", timeout=10
    )

    # Focus stays on the focused button while the meters update (sampled over ~2 s).
    seen, levels = set(), set()
    for _ in range(10):
        seen.add(await focused(elena))
        levels.add(
            round(await elena.evaluate("document.getElementById('console-mic-meter').value"))
        )
        await elena.wait_for_timeout(200)
    assert seen == {"handover-offer"}, f"focus moved while meters updated: {seen}"
    assert len(levels) > 1 or levels != {0}, f"the meter did not move: {levels}"
    violations = await axe_violations(elena)
    assert violations == [], f"axe on the console on air: {violations}"
    await shoot(elena, "onair")

    # Elena hands over (Enter on the focused button); Emilio's Accept gets focus and a beep.
    await elena.keyboard.press("Enter")
    await wait_focus(elena, "handover-cancel")
    await wait_focus(emilio, "handover-accept")
    assert await emilio.evaluate("HC.booth.beeps") == 1
    assert "Elena Ruiz offers you the air" in (await emilio.text_content("#handover-prompt") or "")
    assert "expires in" in (await emilio.text_content("#handover-countdown") or "")
    violations = await axe_violations(emilio)
    assert violations == [], f"axe on the console asked for a handover: {violations}"
    await shoot(emilio, "handover")
    await emilio.keyboard.press("Enter")
    await emilio.wait_for_function(
        "() => document.getElementById('onair').dataset.state === 'live'", timeout=ms(15)
    )
    assert await emilio.evaluate("HC.audio.publishing()")
    await wait_focus(emilio, "handover-offer")
    await wait_focus(elena, "handover-request")  # off air: the next action, not <body>
    assert await elena.get_attribute("#onair", "data-state") == "off"
    await flowing(member, True)  # Emilio's microphone now
    await wait_peak(member, True, 10)

    # Emilio coughs (hold F9): the channel is muted while held, the member hears nothing.
    await emilio.keyboard.down("F9")
    await emilio.wait_for_function("() => HC.state.channels.channels.es.cough", timeout=ms(5))
    # the console renders on its next animation frame (later for a page in the background)
    await emilio.wait_for_function(
        "() => document.getElementById('onair').dataset.state === 'coughing'", timeout=ms(5)
    )
    await flowing(member, False)
    await emilio.keyboard.up("F9")
    await emilio.wait_for_function("() => !HC.state.channels.channels.es.cough", timeout=ms(5))
    await flowing(member, True)
    assert await focused(emilio) == "handover-offer"

    # Elena asks for the air back (Enter on the focused "Ask for handover"); Emilio's Accept
    # gets focus and a second cue; he accepts and is off air, Elena live again.
    await elena.keyboard.press("Enter")
    await wait_focus(emilio, "handover-accept")
    assert await emilio.evaluate("HC.booth.beeps") == 2
    assert "Elena Ruiz asks to take the air" in (
        await emilio.text_content("#handover-prompt") or ""
    )
    await emilio.keyboard.press("Enter")
    await elena.wait_for_function(
        "() => document.getElementById('onair').dataset.state === 'live'", timeout=ms(15)
    )
    await wait_focus(emilio, "handover-request")
    await flowing(member, True)
    assert errors == [], errors


async def test_silence_on_air_is_flagged_after_three_seconds(start_node, invites, browser) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    errors: list[str] = []
    page = await open_console(
        browser,
        node.url,
        invites.mint(room=ROOM, role="interpreter", name="Elena Ruiz", booth="es"),
        errors,
    )
    await page.locator("#air-take").focus()
    await page.keyboard.press("Enter")
    await page.wait_for_function(
        "() => document.getElementById('onair').dataset.state === 'live'", timeout=ms(15)
    )
    await page.wait_for_function(
        "() => document.getElementById('console-mic-meter').value > 0", timeout=ms(5)
    )
    assert await page.is_hidden("#silence-warning")
    # The microphone goes silent (a muted headset): the track sends silence.
    await page.evaluate("HC.audio.mic.stream.getAudioTracks()[0].enabled = false")
    await page.wait_for_selector("#silence-warning:not([hidden])", timeout=ms(15))
    silent_for = await page.evaluate("Date.now() - HC.booth.silentSince")
    assert silent_for >= 3000, f"warned after {silent_for} ms of silence, not 3 s"
    assert "3 seconds" in (await page.text_content("#silence-warning") or "")
    assert await page.get_attribute("#onair", "data-state") == "live"
    await page.evaluate("HC.audio.mic.stream.getAudioTracks()[0].enabled = true")
    await page.wait_for_selector("#silence-warning", state="hidden", timeout=ms(10))

    # The microphone drops while on air: no "ON AIR", a warning and a way back (Alt+M).
    await page.evaluate("HC.audio.stopMic()")
    await page.wait_for_function(
        "() => document.getElementById('onair').dataset.state === 'dead'", timeout=ms(5)
    )
    assert "ON AIR WITHOUT MICROPHONE" in (await page.text_content("#onair") or "")
    assert await page.is_visible("#console-mic")
    await page.keyboard.press("Alt+m")
    await page.wait_for_function(
        "() => document.getElementById('onair').dataset.state === 'live'", timeout=ms(15)
    )
    assert await page.evaluate("HC.audio.publishing()")
    assert await focused(page) == "handover-offer", "focus follows to the next action"
    assert errors == [], errors


async def test_no_air_without_a_publishing_microphone(start_node, invites, browser_args) -> None:  # type: ignore[no-untyped-def]
    """A browser that refuses the microphone (no fake permission UI, no permission granted):
    "Take the air" explains what to do, and no command is ever sent."""
    from playwright.async_api import async_playwright

    assert only_loopback(), "browser tests run in the loopback namespace (scripts/test.sh)"
    node = await start_node()
    errors: list[str] = []
    args = [a for a in browser_args if a != "--use-fake-ui-for-media-stream"]
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            page = await open_console(
                b,
                node.url,
                invites.mint(room=ROOM, role="interpreter", name="Elena Ruiz", booth="es"),
                errors,
            )
            await page.evaluate(
                "() => { window.sent = []; const orig = HC.command;"
                " HC.command = (n, a) => { sent.push(n); return orig(n, a); }; }"
            )
            await page.locator("#air-take").focus()
            await page.keyboard.press("Enter")
            await page.wait_for_selector("#mic-prompt:not([hidden])", timeout=ms(15))
            prompt = await page.text_content("#mic-prompt") or ""
            assert "microphone is blocked" in prompt and "Allow the microphone" in prompt
            assert await page.evaluate("HC.audio.micError") == "denied"
            assert await page.evaluate("window.sent") == [], "the air was asked for without a mic"
            assert await page.evaluate("HC.state.channels.channels.es.live") is None
            assert await focused(page) == "air-take", "focus stays on Take the air"
            assert await page.get_attribute("#onair", "data-state") == "off"
            violations = await axe_violations(page)
            assert violations == [], f"axe with the microphone prompt: {violations}"
        finally:
            await b.close()
    # The page reports the refusal with a toast (an error only for the console, not a crash).
    assert [e for e in errors if "pageerror" in e] == [], errors
