"""The speaker's picture and voice at the interpreter's console stay within 100 ms (issue 10).

A flash and a beep made at one capture instant, once a second, by an aiortc speaker (the
chair, on stage, with the floor); the console page in Chromium shows and plays them, and
probes in the page time each (tests/avsync_console.py says how). The median offset over
the run must be within ±100 ms; the figures are printed (``-s``) and recorded in
docs/benchmarks.md by ``bench/avsync.py --console``.
"""

from __future__ import annotations

import statistics

import pytest

from .audio_helpers import loopback_ice
from .avsync_console import measure, table

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures(loopback_ice.__name__)]


async def test_the_console_shows_the_speaker_within_100_ms_of_the_floor_audio(  # type: ignore[no-untyped-def]
    start_node, invites, browser
) -> None:
    node = await start_node()
    run = await measure(browser, node.url, invites, seconds=20)
    print("\n" + table([run]))
    assert run.page["errors"] == [], run.page["errors"]
    assert run.page["streams"] >= 1, f"the probe found no floor audio: {run.page}"
    offsets = run.offsets()
    assert len(offsets) >= 7, (
        f"only {len(offsets)} of {len(run.sent)} events seen by both probes "
        f"(beeps {len(run.beeps)}, flashes {len(run.flashes)}, frames {run.page['frames']})"
    )
    median = statistics.median(offsets)
    assert abs(median) <= 0.100, (
        f"the picture is {median * 1000:+.0f} ms from the sound at the console "
        f"(offsets {[round(x * 1000) for x in offsets]} ms)"
    )
