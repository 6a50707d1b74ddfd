"""Network changes: UDP gone for a while, then back; the audio resumes without a reload, on
the same channel, and the page says "Reconnecting audio…" while it is away.

An interpreter speaks (Chromium's fake microphone, a 440 Hz tone) into the Spanish channel;
a participant's page listens to Spanish. nftables drops every UDP datagram in the test's
namespace (the WebSocket is TCP and stays up), then the rules go.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from . import test_audio_browser as ab
from .audio_helpers import loopback_ice  # noqa: F401 (fixture)
from .conftest import timeout
from .reach_helpers import Rules, spanish_heard, still_on_spanish, tone_args

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("loopback_ice")]

ALL_UDP = "meta l4proto udp counter drop"


@pytest.fixture
def browser_args(tmp_path: Path) -> list[str]:
    return tone_args(tmp_path)


async def test_udp_gone_for_5_s_audio_resumes_within_3_s_on_the_same_channel(
    start_node, invites, browser, rules: Rules
) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    ivan, ana = await spanish_heard(browser, node, invites)
    rules.set(ALL_UDP)
    started = time.monotonic()
    await ab.wait_peak(ana, False, 5)  # the tone is gone while UDP is
    await asyncio.sleep(max(0.0, 5.0 - (time.monotonic() - started)))  # the outage: 5 s
    rules.clear()
    back = time.monotonic()
    await ab.wait_peak(ana, True, 3)
    print(f"reach outage: 5 s without UDP, audio back {time.monotonic() - back:.2f} s after")
    await still_on_spanish(ivan, ana)
    await ana.close()
    await ivan.close()


async def test_a_longer_outage_says_reconnecting_and_recovers_with_a_new_connection(
    start_node, invites, browser, rules: Rules
) -> None:  # type: ignore[no-untyped-def]
    """Past the page's patience (disconnected 8 s) the page builds a new peer connection;
    once UDP is back the audio resumes on it, on the same channel, and the air state held."""
    node = await start_node()
    ivan, ana = await spanish_heard(browser, node, invites)
    await ana.evaluate("HC.audio.pc.marked = true")
    rules.set(ALL_UDP)
    await ana.wait_for_function(
        "() => document.getElementById('hearing').textContent === 'Reconnecting audio…'",
        timeout=timeout(12) * 1000,
    )
    await ana.wait_for_function(
        "() => HC.audio.pc && !HC.audio.pc.marked", timeout=timeout(15) * 1000
    )
    rules.clear()
    back = time.monotonic()
    await ab.wait_peak(ana, True, 10)
    print(f"reach outage: new peer connection, audio back {time.monotonic() - back:.2f} s after")
    await ana.wait_for_function(
        "() => document.getElementById('hearing').textContent.includes('Spanish')",
        timeout=timeout(5) * 1000,
    )
    await still_on_spanish(ivan, ana)
    await ana.close()
    await ivan.close()


async def test_back_online_builds_a_new_connection_when_the_old_one_is_down(
    start_node, invites, browser, rules: Rules
) -> None:  # type: ignore[no-untyped-def]
    """The browser's `online` event (a new network) rebuilds a connection that is not up at
    once, without waiting for the page's patience to run out."""
    node = await start_node()
    ivan, ana = await spanish_heard(browser, node, invites)
    await ana.evaluate("HC.audio.pc.marked = true")
    rules.set(ALL_UDP)
    await ana.wait_for_function(
        "() => HC.audio.pc.connectionState === 'disconnected'", timeout=timeout(10) * 1000
    )
    await ana.evaluate("window.dispatchEvent(new Event('online'))")
    await ana.wait_for_function(
        "() => HC.audio.pc && !HC.audio.pc.marked", timeout=timeout(2) * 1000
    )
    rules.clear()
    await ab.wait_peak(ana, True, 5)
    await still_on_spanish(ivan, ana)
    await ana.close()
    await ivan.close()


async def test_the_node_giving_up_on_a_microphone_makes_the_page_offer_a_new_one(
    start_node, invites, browser
) -> None:  # type: ignore[no-untyped-def]
    """A long outage can outlast the node's patience before the page's: aiortc closes the
    interpreter's publishing connection (ICE consent expired) and the node says
    ``rtc.closed`` ``ice_failed``. The console makes a new microphone connection by itself:
    an interpreter on air does not lose the channel's voice to it (the CI run of 2026-11-30
    caught the old behaviour: the microphone stopped for good)."""
    node = await start_node()
    ivan, ana = await spanish_heard(browser, node, invites)
    await ivan.evaluate("HC.audio.mic.pc.marked = true")
    audio = node.node.feature["audio"].room("plenary").signalling
    (pub,) = list(audio.publishers.values())
    await pub.pc.close()  # what aiortc does when consent expires: the node sees "closed"
    await ivan.wait_for_function(
        "() => HC.audio.mic && !HC.audio.mic.pc.marked"
        " && HC.audio.mic.pc.connectionState === 'connected'",
        timeout=timeout(10) * 1000,
    )
    await ab.wait_peak(ana, True, 10)
    await still_on_spanish(ivan, ana)
    await ana.close()
    await ivan.close()
