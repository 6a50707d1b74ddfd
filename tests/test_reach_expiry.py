"""TURN credentials that expire during a relayed call (coturn's REST scheme: the expiry is in
the username, server/media/turn.py).

What coturn does (4.6.1, read in its source and seen here): it checks a credential's expiry
only when a session authenticates anew (``get_user_key``, the first ALLOCATE of a TURN
session); the allocation keeps the key it derived, so its Refresh, CreatePermission and
ChannelBind go on succeeding after the expiry, and it refuses a *change* of username on an
allocation (437/441). So a call outlives its credential; what an expired one breaks is the
*next* allocation — a new peer connection after a network change or a failure. The node
therefore sends each connection fresh credentials at 80 % of their lifetime (``rtc.ice``), and
the page makes its next peer connection with them without asking.

Chromium relayed over TURN/TCP with all UDP blocked, credentials valid 10 s: the listener's
audio flows for 2.5 lifetimes on the same peer connection; the page holds renewed
credentials (and gave them to its live peer connections); the first credential is refused by
coturn by then (401); after the node closes the listening connection (as after an ICE
failure), the page's new one allocates with the renewed credential without an ``rtc.ice``
round trip and the audio comes back through the relay, on the same channel.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from . import test_audio_browser as ab
from .audio_helpers import loopback_ice  # noqa: F401 (fixture)
from .conftest import timeout
from .reach_helpers import BLOCK_UDP, Rules, TurnServer, spanish_heard, still_on_spanish, with_turn
from .test_reach_turn import browser_args  # noqa: F401 (fixture: a tone, coturn's certificate)

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("loopback_ice")]

TTL = 10


FLOW = """async () => {
  const pc = HC.audio.pc;
  let bytes = 0, samples = 0, local = null;
  const stats = await pc.getStats();
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      bytes += s.bytesReceived || 0; samples += s.totalSamplesReceived || 0;
    }
    if (s.type === 'transport' && s.selectedCandidatePairId) {
      const pair = stats.get(s.selectedCandidatePairId);
      if (pair) local = stats.get(pair.localCandidateId);
    }
  });
  return { bytes, samples, state: pc.connectionState, marked: !!pc.marked,
           type: local && local.candidateType, protocol: local && local.relayProtocol };
}"""

TURN_USER = """(servers) => {
  const turn = (servers || []).find((s) => [].concat(s.urls).some((u) => u.startsWith('turn')));
  return turn ? turn.username : null;
}"""

REFUSED = """async (server) => {
  // An allocation of our own with `server`'s credentials: coturn's answer, as the errors.
  const pc = new RTCPeerConnection({ iceServers: [server], iceTransportPolicy: 'relay' });
  const errors = [];
  let relay = 0;
  pc.addEventListener('icecandidateerror', (e) => errors.push(e.errorCode));
  pc.addEventListener('icecandidate', (e) => { if (e.candidate) relay += 1; });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((r) => setTimeout(r, 2000));
  pc.close();
  return { errors, relay };
}"""


async def expiry(page: Any, servers_js: str) -> int:
    user = await page.evaluate(f"({TURN_USER})({servers_js})")
    assert user, f"no TURN credentials in {servers_js}"
    return int(user.split(":", 1)[0])


async def test_a_relayed_call_outlives_its_turn_credentials_and_reconnects_with_fresh_ones(
    start_node, invites, browser, assembly, turn_server: TurnServer, rules: Rules
) -> None:  # type: ignore[no-untyped-def]
    node = await start_node(config=with_turn(assembly, turn_server.urls("tcp"), ttl=TTL))
    rules.set(BLOCK_UDP)  # before the pages: only the relay over TCP works
    ivan, ana = await spanish_heard(browser, node, invites)
    first_server = await ana.evaluate(
        "HC.audio.pc.getConfiguration().iceServers.find((s) => s.username)"
    )
    first = int(first_server["username"].split(":", 1)[0])
    await ana.evaluate("HC.audio.pc.marked = true")

    # 2.5 lifetimes on the same peer connection: every 2.5 s the audio has advanced.
    last = await ana.evaluate(FLOW)
    assert last["type"] == "relay" and last["protocol"] == "tcp", last
    until = time.time() + 2.5 * TTL
    while time.time() < until:
        await asyncio.sleep(2.5)
        now = await ana.evaluate(FLOW)
        assert now["marked"] and now["state"] == "connected", now
        assert now["bytes"] > last["bytes"] and now["samples"] > last["samples"] + 48_000, (
            f"the audio stalled {time.time() - first:+.1f} s after the credential's expiry",
            last,
            now,
        )
        last = now
    assert time.time() > first + TTL, "the call did not outlive its first credential"
    await ab.wait_peak(ana, True, 2)

    # The page holds renewed credentials, and gave them to its live peer connection.
    held = await expiry(ana, "HC.audio.ice.iceServers")
    assert held > time.time(), f"the page's credentials expired {time.time() - held:.1f} s ago"
    assert held >= first + TTL, (first, held)
    assert await expiry(ana, "HC.audio.pc.getConfiguration().iceServers") == held
    # coturn refuses the first credential by now: a new allocation needs the renewed ones.
    refused = await ana.evaluate(REFUSED, first_server)
    assert 401 in refused["errors"] and refused["relay"] == 0, refused

    # The node closes the listening connection (as when its ICE fails): the page makes a new
    # one at once with the credentials it holds, without an rtc.ice round trip.
    await ana.evaluate("""() => {
      HC.iceAsked = 0;
      const send = HC.send;
      HC.send = (m) => { if (m.type === 'rtc.ice') HC.iceAsked += 1; return send(m); };
    }""")
    audio = node.node.feature["audio"].room("plenary").signalling
    pid = await ana.evaluate("HC.you.pid")
    (peers,) = [
        p for p in audio.peers.values() if p.listener and p.listener.peer.person["pid"] == pid
    ]
    audio.close_soon(peers, "listen", {"code": "ice_failed", "message": "test: closed"})
    await ana.wait_for_function(
        "() => HC.audio.pc && !HC.audio.pc.marked && HC.audio.pc.connectionState === 'connected'",
        timeout=timeout(10) * 1000,
    )
    after = await ana.evaluate(FLOW)
    assert after["type"] == "relay" and after["protocol"] == "tcp", after
    assert await ana.evaluate("HC.iceAsked") == 0
    assert await expiry(ana, "HC.audio.pc.getConfiguration().iceServers") > first
    await ab.wait_peak(ana, True, 5)
    await still_on_spanish(ivan, ana)
    print(
        f"reach turn expiry: ttl {TTL} s, audio flowed {time.time() - first:.0f} s past the "
        f"first credential's expiry; renewed up to {held - first} s later"
    )
    await ana.close()
    await ivan.close()
