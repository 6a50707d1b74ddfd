"""Chromium: two people speak on the floor at once and a listener's page hears both.

The chair's page and a panelist's page each publish Chromium's fake microphone — a
generated tone file, 440 Hz for one and 1,000 Hz for the other, so each runs in a
Chromium of its own (the fake-audio file is a launch flag) — while a member's page listens
to the floor. The server forwards the two microphones as two tracks (no mixing, no
decoding); the member's page mixes them, and its analyser finds both tones at once.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from .audio_helpers import loopback_ice  # noqa: F401 (fixture)
from .conftest import CHROMIUM, CHROMIUM_ARGS, WatchedBrowser, timeout
from .test_audio_browser import open_page, tone_wav

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("loopback_ice")]
CHAIR_TONE, PANEL_TONE = 440.0, 1000.0

PEAKS = """(freqs) => {
  const a = HC.audio.analyser;
  if (!a) return null;
  a.smoothingTimeConstant = 0;
  const bins = new Float32Array(a.frequencyBinCount);
  a.getFloatFrequencyData(bins);
  const hz = a.context.sampleRate / a.fftSize;
  const near = (f) => Math.max(...[-2, -1, 0, 1, 2].map((d) => bins[Math.round(f / hz) + d]));
  const floor = [...bins].sort((x, y) => x - y)[Math.floor(bins.length / 2)];
  return { db: freqs.map(near), median: floor };
}"""


@pytest.fixture
def browser_args(tmp_path: Path) -> list[str]:
    wav = tone_wav(tmp_path / "chair.wav", CHAIR_TONE)
    return [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}"]


@contextlib.asynccontextmanager
async def second_chromium(wav: Path) -> AsyncIterator[WatchedBrowser]:
    """Another Chromium whose fake microphone plays ``wav``."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        args = [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}"]
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        watched = WatchedBrowser(b)
        try:
            yield watched
        finally:
            await b.close()
        assert not watched.violations, watched.violations


async def speak(page: Any) -> None:
    await page.click("#mic-button")
    await page.wait_for_function(
        "() => HC.audio.mic && HC.audio.mic.pc.connectionState === 'connected'",
        timeout=timeout(10) * 1000,
    )


async def hears(page: Any, want: list[bool], seconds: float, steady: int = 8) -> dict[str, Any]:
    """Wait until the listener's analyser shows (or not) each tone — a peak 20 dB over the
    median bin — in ``steady`` readings in a row, 0.1 s apart, without smoothing: a floor
    that switched between the voices (one at a time) does not pass for both at once."""
    deadline = time.monotonic() + timeout(seconds)
    peaks: dict[str, Any] | None = None
    run = 0
    while time.monotonic() < deadline:
        peaks = await page.evaluate(PEAKS, [CHAIR_TONE, PANEL_TONE])
        if peaks and [db > peaks["median"] + 20 and db > -80 for db in peaks["db"]] == want:
            run += 1
            if run >= steady:
                return peaks
        else:
            run = 0
        await page.wait_for_timeout(100)
    raise AssertionError(
        f"the listener's analyser did not show {CHAIR_TONE}, {PANEL_TONE} Hz as {want} "
        f"within {seconds} s; last: {peaks}"
    )


async def test_a_listener_hears_two_speakers_at_once(
    start_node, invites, browser, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    chair_token = invites.mint(room="plenary", role="moderator", name="Chair")
    pan_token = invites.mint(room="plenary", role="participant", name="Panelist")
    ana_token = invites.mint(room="plenary", role="participant", name="Ana")
    async with second_chromium(tone_wav(tmp_path / "panel.wav", PANEL_TONE)) as other:
        chair = await open_page(browser, node.url, chair_token)
        ana = await open_page(browser, node.url, ana_token)
        panelist = await open_page(other, node.url, pan_token)
        pid = await panelist.evaluate("HC.you.pid")
        await chair.evaluate(f"HC.command('floor.grant', {{ pid: {pid!r} }})")
        await panelist.wait_for_function(
            "() => HC.state.core.speakers.includes(HC.you.pid)", timeout=timeout(5) * 1000
        )
        await ana.click("#listen-button")
        await ana.wait_for_function(
            "() => HC.audio.pc && HC.audio.pc.connectionState === 'connected'",
            timeout=timeout(10) * 1000,
        )
        await speak(chair)
        await hears(ana, [True, False], 10)
        await speak(panelist)
        peaks = await hears(ana, [True, True], 10)  # both voices, mixed in Ana's browser
        floor = node.node.feature["audio"].room("plenary").sources["floor"]
        assert len([h for h in floor.floor[2].holders() if h]) == 2, "two lanes in use"
        await chair.click("#mic-button")  # the chair stops: the panelist goes on alone
        await hears(ana, [False, True], 10)
        print("peaks with both speaking:", peaks)
        for page in (chair, ana, panelist):
            await page.close()
