"""Chromium end to end: a fake microphone on a channel, heard by another page, then not.

The interpreter's page takes the air on its console and publishes Chromium's fake
microphone (a generated 440 Hz tone file) into the Spanish channel; a participant's page
that picked Spanish in the language picker finds 440 Hz with a WebAudio analyser; after
picking French (nobody on air: the silent floor) it does not; back on Spanish it does again,
on the same peer connection.
"""

from __future__ import annotations

import array
import math
import time
import wave
from pathlib import Path
from typing import Any

import pytest

from .audio_helpers import loopback_ice  # noqa: F401 (fixture)
from .conftest import CHROMIUM_ARGS, timeout
from .waiting import eventually

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("loopback_ice")]
TONE = 440.0


def tone_wav(path: Path, freq: float, seconds: float = 10.0) -> Path:
    """A mono 16-bit 48 kHz sine, the stdlib way (Chromium loops the file)."""
    rate = 48_000
    samples = array.array(
        "h",
        (int(12_000 * math.sin(2 * math.pi * freq * n / rate)) for n in range(int(rate * seconds))),
    )
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


@pytest.fixture
def browser_args(tmp_path: Path) -> list[str]:
    wav = tone_wav(tmp_path / "tone.wav", TONE)
    return [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}"]


PEAK = """() => {
  const a = HC.audio.analyser;
  if (!a) return null;
  const bins = new Float32Array(a.frequencyBinCount);
  a.getFloatFrequencyData(bins);
  let best = 1;
  for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
  return { freq: best * a.context.sampleRate / a.fftSize, db: bins[best],
           bin: a.context.sampleRate / a.fftSize };
}"""


def is_tone(peak: dict[str, float] | None) -> bool:
    return bool(peak) and abs(peak["freq"] - TONE) <= 2 * peak["bin"] and peak["db"] > -70


async def wait_peak(page: Any, want: bool, seconds: float) -> dict[str, float] | None:
    deadline = time.monotonic() + timeout(seconds)
    peak = None
    while time.monotonic() < deadline:
        peak = await page.evaluate(PEAK)
        if is_tone(peak) == want:
            return peak
        await page.wait_for_timeout(100)
    state = "hear" if want else "stop hearing"
    raise AssertionError(
        f"the listening page did not {state} {TONE} Hz within {seconds} s; "
        f"last analyser peak: {peak}"
    )


INBOUND = """async () => {
  let n = 0;
  if (!HC.audio.pc) return 0;
  (await HC.audio.pc.getStats()).forEach((r) => {
    if (r.type === "inbound-rtp" && r.mid === "0") n = r.packetsReceived;
  });
  return n;
}"""


async def flowing(page: Any, want: bool, seconds: float = 15) -> None:
    """Whether packets keep arriving on the page's main listening track (over 0.6 s).

    Stronger than a tone in the analyser, which Chromium's packet-loss concealment keeps
    ringing for seconds after the packets stop."""

    async def step() -> bool:
        before = await page.evaluate(INBOUND)
        await page.wait_for_timeout(600)
        return bool((await page.evaluate(INBOUND) > before) == want)

    await eventually(step, message=f"packets {'' if want else 'not '}arriving", timeout=seconds)


async def open_page(browser: Any, url: str, token: str) -> Any:
    page = await browser.new_page()
    page.on("pageerror", lambda exc: print("page error:", exc))
    await page.goto(f"{url}/r/plenary#t={token}")
    await page.wait_for_function(
        "() => HC.connected && HC.audio && HC.audio.els.main", timeout=timeout(5) * 1000
    )
    return page


async def take_air(page: Any, booth: str, mic_seconds: float) -> None:
    """An interpreter's page takes the air of ``booth``; its microphone is up within
    ``mic_seconds``."""
    await page.click("#air-take")
    await page.wait_for_function(
        f"() => HC.state.channels.channels.{booth}.live === HC.you.pid", timeout=timeout(5) * 1000
    )
    # the console started the microphone before it asked for the air (static/booth.js)
    await page.wait_for_function(
        "() => HC.audio.mic && HC.audio.mic.pc.connectionState === 'connected'",
        timeout=timeout(mic_seconds) * 1000,
    )


async def test_tone_on_a_channel_heard_then_not_after_switching(
    start_node, invites, browser
) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    ivan_token = invites.mint(room="plenary", role="interpreter", name="Ivan", booth="es")
    ana_token = invites.mint(room="plenary", role="participant", name="Ana")
    ivan_page = await open_page(browser, node.url, ivan_token)
    ana_page = await open_page(browser, node.url, ana_token)
    await take_air(ivan_page, "es", 5)
    assert await ivan_page.text_content("#mic-state") == "On air"
    # One control (issue 11): picking the language starts the audio; the button now stops it.
    await ana_page.select_option("#channel-picker", "es")
    await (
        ana_page.locator("#listen-button")
        .get_by_text("Stop listening")
        .wait_for(timeout=timeout(5) * 1000)
    )
    await ana_page.wait_for_function(
        "() => HC.audio.pc && HC.audio.pc.connectionState === 'connected' && HC.audio.analyser",
        timeout=timeout(5) * 1000,
    )
    await wait_peak(ana_page, True, 5)
    assert "Spanish" in (await ana_page.text_content("#hearing") or "")
    room = node.node.feature["audio"].rooms["plenary"]
    assert room.metrics.audio_in.labels("forwarded")._value.get() > 0

    await ana_page.select_option("#channel-picker", "fr")
    # Packets stop at once; the analyser's tone fades with Chromium's concealment, slower
    # on a loaded machine.
    await flowing(ana_page, False)
    await wait_peak(ana_page, False, 10)
    assert "original" in (await ana_page.text_content("#hearing") or "")
    await ana_page.evaluate("HC.audio.pc.marked = true")
    await ana_page.select_option("#channel-picker", "es")
    await flowing(ana_page, True)
    await wait_peak(ana_page, True, 3)
    assert await ana_page.evaluate("HC.audio.pc.marked === true"), (
        "switching channel must not create a new peer connection"
    )
    await ana_page.close()
    await ivan_page.close()


async def test_the_chairs_record_button_gives_the_recording_commands(
    start_node, invites, browser, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """The page sends ``recording.start``/``recording.stop`` as commands; a participant's page
    sees the room is recorded, and the chair's list shows the finished recording."""
    node = await start_node(settings={"recordings": str(tmp_path)})
    chair = await open_page(
        browser, node.url, invites.mint(room="plenary", role="moderator", name="Chair")
    )
    ana = await open_page(
        browser, node.url, invites.mint(room="plenary", role="participant", name="Ana")
    )
    assert await ana.is_hidden("#chair-box")
    await chair.click("#rec-button")
    await ana.wait_for_selector("#rec-badge:not([hidden])", timeout=timeout(5) * 1000)
    rec = await ana.evaluate("HC.state.audio.recording")
    assert rec["node"] == node.node.name and rec["by"] == await chair.evaluate("HC.you.pid")
    await chair.wait_for_function(
        "() => document.getElementById('rec-button').textContent === 'Stop recording'",
        timeout=timeout(5) * 1000,
    )
    await chair.click("#rec-button")
    await ana.wait_for_selector("#rec-badge[hidden]", state="attached", timeout=timeout(5) * 1000)
    await chair.wait_for_function(
        f"() => document.getElementById('rec-list').textContent.includes({rec['id']!r})",
        timeout=timeout(5) * 1000,
    )
    assert (tmp_path / "plenary" / rec["id"] / "floor.ogg").is_file()
    await chair.close()
    await ana.close()
