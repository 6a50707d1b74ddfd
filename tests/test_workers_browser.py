"""Chromium through media workers: the member page's listening connection (made held at the
welcome, released by the click) lives on a worker process and the floor is heard there; the
worker is killed, the page rebuilds its connection and hears again, without a reload."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from . import test_audio_browser as ab
from .audio_helpers import loopback_ice  # noqa: F401 (fixture)
from .conftest import CHROMIUM_ARGS, timeout
from .test_reach_turn import floor_heard
from .test_workers import pool_of

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("loopback_ice")]


@pytest.fixture
def media_workers() -> int:
    return 2


@pytest.fixture
def browser_args(tmp_path: Path) -> list[str]:
    wav = ab.tone_wav(tmp_path / "tone.wav", ab.TONE)
    return [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}"]


async def test_a_page_hears_the_floor_through_a_worker_and_again_after_it_dies(
    start_node, invites, browser
) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    pool = await pool_of(node)
    chair, ana = await floor_heard(browser, node, invites)  # the floor heard, on a worker
    # Both pages made their listening connection at the welcome, on a worker; the chair's
    # stays held (no click: it carries nothing), Ana's hears the floor.
    assert sum(len(link.listeners) for link in pool.links) == 2
    hearing = [
        n for n, link in enumerate(pool.links) for peer in link.listeners.values() if peer.heard[0]
    ]
    assert len(hearing) == 1, f"only Ana's connection carries the floor: {hearing}"
    victim = hearing[0]
    await ana.evaluate("HC.audio.pc.marked = true")
    pid = pool.pids()[victim]
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await ana.wait_for_function(
        "() => HC.audio.pc && !HC.audio.pc.marked && HC.audio.pc.connectionState === 'connected'",
        timeout=timeout(20) * 1000,
    )
    assert await ab.wait_peak(ana, True, 10), "heard again on a new connection, no reload"
    await chair.close()
    await ana.close()
