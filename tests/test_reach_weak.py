"""Low bandwidth: a listener whose audio conceals too much (30 % of the datagrams towards
its browser dropped) is offered "captions only"; taking it stops the audio, and the node no
longer counts the person as a listener (nor as one without audio)."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import test_audio_browser as ab
from .audio_helpers import loopback_ice  # noqa: F401 (fixture)
from .conftest import timeout
from .reach_helpers import Rules, browser_port, chair_and_ana, loss, tone_args
from .waiting import eventually

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("loopback_ice")]


@pytest.fixture
def browser_args(tmp_path: Path) -> list[str]:
    return tone_args(tmp_path)


async def test_captions_only_is_proposed_when_the_audio_conceals_too_much(
    start_node, invites, browser, rules: Rules
) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    chair, ana = await chair_and_ana(browser, node, invites)
    await chair.click("#mic-button")
    await ana.click("#listen-button")
    await ab.wait_peak(ana, True, 10)
    assert await ana.is_hidden("#reach-weak")
    signalling = node.node.feature["audio"].rooms["plenary"].signalling
    pid = await ana.evaluate("HC.you.pid")  # the chair's page holds a connection too
    (listener,) = [x for x in signalling.listeners() if x.peer.person["pid"] == pid]
    rules.set(loss(browser_port(listener.pc), 30))
    await ana.wait_for_selector("#reach-weak:not([hidden])", timeout=timeout(25) * 1000)
    await ana.click("#reach-captions")
    await ana.wait_for_function("() => !HC.audio.wantListen && !HC.audio.pc")
    assert await ana.is_hidden("#reach-weak")
    await eventually(
        signalling.reach,
        until=lambda f: f == {"listening": 0, "no_audio": 0},
        message="the node to forget the listener who chose captions only",
    )
    await ana.close()
    await chair.close()
