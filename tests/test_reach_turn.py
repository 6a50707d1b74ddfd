"""Chromium with its UDP to the node dropped: it hears the floor through coturn over TCP and
over TLS; with no TURN configured it gets the clear failure, and the chair's board counts it.

All on 127.0.0.1 in the test's own network namespace: nftables drops every UDP datagram but
coturn's relay traffic (tests/reach_helpers.py ``BLOCK_UDP``), coturn runs on free ports with
a self-signed certificate that Chromium accepts through its SPKI hash only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from . import test_audio_browser as ab
from .audio_helpers import loopback_ice  # noqa: F401 (fixture)
from .conftest import timeout
from .reach_helpers import (
    BLOCK_UDP,
    Cert,
    Rules,
    TurnServer,
    chair_and_ana,
    mic_on,
    open_as,
    tone_args,
    with_turn,
)
from .stage_pages import camera_on, tile_plays

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("loopback_ice")]


@pytest.fixture
def browser_args(tmp_path: Path, turn_cert: Cert) -> list[str]:
    return [*tone_args(tmp_path), f"--ignore-certificate-errors-spki-list={turn_cert.spki}"]


SELECTED = """async () => {
  const stats = await HC.audio.pc.getStats();
  let pair = null;
  stats.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId)
    pair = stats.get(s.selectedCandidatePairId); });
  if (!pair) return null;
  const local = stats.get(pair.localCandidateId);
  return { type: local.candidateType, relayProtocol: local.relayProtocol || null,
           url: local.url || null,
           rtt: [pair.currentRoundTripTime, pair.totalRoundTripTime / pair.responsesReceived,
                 pair.responsesReceived] };
}"""


async def floor_heard(browser: Any, node: Any, invites: Any) -> tuple[Any, Any]:
    """The chair speaks on the floor; a participant listens. Returns (chair, ana) pages."""
    chair, ana = await chair_and_ana(browser, node, invites)
    await mic_on(chair)
    await ana.click("#listen-button")
    await ana.wait_for_function(
        "() => HC.audio.pc && HC.audio.pc.connectionState === 'connected' && HC.audio.analyser",
        timeout=timeout(15) * 1000,
    )
    await ab.wait_peak(ana, True, 10)
    return chair, ana


@pytest.mark.parametrize("transport", ["direct", "tcp", "tls"])
async def test_floor_heard_through_coturn_with_udp_blocked(
    start_node, invites, browser, assembly, turn_server: TurnServer, rules: Rules, transport
) -> None:  # type: ignore[no-untyped-def]
    """With TURN over TCP or TLS and UDP blocked, the selected pair is the relay; "direct"
    (UDP open, no TURN) is the reference for the round-trip time printed (``-s``)."""
    relayed = transport != "direct"
    config = with_turn(assembly, turn_server.urls(transport)) if relayed else assembly
    node = await start_node(config=config)
    if relayed:
        rules.set(BLOCK_UDP)
    chair, ana = await floor_heard(browser, node, invites)
    selected = await ana.evaluate(SELECTED)
    now, mean, count = selected.pop("rtt")
    print(
        f"reach turn: {transport} path, listener's ICE round trip {now * 1000:.1f} ms now, "
        f"{mean * 1000:.1f} ms mean of {count}"
    )
    if relayed:
        assert selected == {
            "type": "relay",
            "relayProtocol": transport,
            "url": turn_server.urls(transport)[0],
        }, selected
        assert "drop" in rules.counters()
        # The credentials were per person and checked by coturn (it logs each allocation).
        assert "ALLOCATE" in turn_server.log and "success" in turn_server.log
    else:
        assert selected["type"] == "host", selected
    assert await ana.is_hidden("#reach-box")
    await chair.close()
    await ana.close()


async def test_no_turn_and_udp_blocked_gives_the_clear_failure(
    start_node, invites, browser, rules: Rules
) -> None:  # type: ignore[no-untyped-def]
    """Within about 10 s the page says audio could not connect, names the likely cause (UDP
    blocked, no TURN configured) and offers Retry; the chair's board counts one listener
    without audio. Retry makes a new peer connection, which connects once UDP is back, and
    the board goes back to 0."""
    node = await start_node()
    chair = await open_as(browser, node, invites, "moderator", "Chair")
    rules.set(BLOCK_UDP)  # before Ana's page: its listening connection is made at once, held
    ana = await open_as(browser, node, invites, "participant", "Ana")
    await ana.click("#listen-button")
    await ana.wait_for_selector("#reach-box:not([hidden])", timeout=timeout(14) * 1000)
    assert await ana.evaluate("HC.audio.pc.connectionState") != "connected"
    assert await ana.text_content("#reach-what") == "Audio could not connect within 10 seconds."
    cause = await ana.text_content("#reach-cause") or ""
    assert "blocks UDP" in cause and "no TURN relay is configured" in cause, cause
    assert await ana.is_visible("#reach-retry")
    await chair.wait_for_function(
        "() => document.getElementById('reach-board').dataset.noAudio === '1'",
        timeout=timeout(8) * 1000,
    )
    assert "Without audio: 1 of 1" in (await chair.text_content("#reach-board") or "")

    await ana.evaluate("HC.audio.pc.marked = true")
    for _ in range(80):  # Retry by keyboard only: Tab to it, Enter
        if await ana.evaluate("document.activeElement.id") == "reach-retry":
            break
        await ana.keyboard.press("Tab")
    assert await ana.evaluate("document.activeElement.id") == "reach-retry"
    await ana.keyboard.press("Enter")  # a new peer connection (the old one is closed)
    rules.clear()
    await ana.wait_for_function(
        "() => HC.audio.pc && !HC.audio.pc.marked && HC.audio.pc.connectionState === 'connected'",
        timeout=timeout(10) * 1000,
    )
    assert await ana.is_hidden("#reach-box")
    await chair.wait_for_function(
        "() => document.getElementById('reach-board').dataset.noAudio === '0'",
        timeout=timeout(8) * 1000,
    )
    await chair.close()
    await ana.close()


async def test_a_relay_that_refuses_the_credentials_is_named_as_the_cause(
    start_node, invites, browser, assembly, turn_server: TurnServer, rules: Rules
) -> None:  # type: ignore[no-untyped-def]
    """The node's secret is not coturn's: coturn answers 401 and the page says so."""
    config = with_turn(assembly, turn_server.urls("tcp"), secret="not-the-secret-coturn-has-0123")
    node = await start_node(config=config)
    rules.set(BLOCK_UDP)
    ana = await open_as(browser, node, invites, "participant", "Ana")
    await ana.click("#listen-button")
    await ana.wait_for_selector("#reach-box:not([hidden])", timeout=timeout(14) * 1000)
    cause = await ana.text_content("#reach-cause") or ""
    assert "refused this page's credentials" in cause, cause
    await ana.close()


VIDEO_PAIR = """async () => {
  const stats = await HC.video.state.view.pc.getStats();
  let pair = null;
  stats.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId)
    pair = stats.get(s.selectedCandidatePairId); });
  const local = pair && stats.get(pair.localCandidateId);
  return local ? { type: local.candidateType, relayProtocol: local.relayProtocol || null } : null;
}"""


async def test_the_stage_video_goes_through_coturn_with_udp_blocked(
    start_node, invites, browser, assembly, turn_server: TurnServer, rules: Rules
) -> None:  # type: ignore[no-untyped-def]
    """The stage's peer connections take the same TURN credentials as the audio: with UDP
    blocked, the chair's camera is published and a member's tile plays, both relayed."""
    node = await start_node(config=with_turn(assembly, turn_server.urls("tcp")))
    rules.set(BLOCK_UDP)
    chair, ana = await chair_and_ana(browser, node, invites)
    await camera_on(chair, 15)
    await tile_plays(ana, 15)
    assert await ana.evaluate(VIDEO_PAIR) == {"type": "relay", "relayProtocol": "tcp"}
    assert "drop" in rules.counters()
    await chair.close()
    await ana.close()
