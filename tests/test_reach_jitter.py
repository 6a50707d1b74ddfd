"""Jitter on the link: the floor still plays when the listener's path delays its packets by
a random 0–JITTER ms each.

A small user-space relay in the test stands on the path. Chromium's UDP is blocked
(nftables, ``BLOCK_UDP``) so both pages reach the node through coturn over TCP, and the
TURN URL the node hands out points at the relay, which forwards each TCP connection to
coturn and holds every chunk it carries for a random delay (kept in order, as TCP does; the
next chunk waits for the one before it). The figure is the listener's own ``getStats``:
concealed samples / samples received, and its jitter-buffer delay, over a window, with the
jitter and without it, printed (``-s``) for docs/benchmarks.md's Reach table.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

import pytest

from . import test_audio_browser as ab
from .audio_helpers import loopback_ice  # noqa: F401 (fixture)
from .reach_helpers import BLOCK_UDP, Rules, TurnServer, chair_and_ana, mic_on, with_turn
from .test_reach_loss import WINDOW
from .test_reach_turn import browser_args  # noqa: F401 (fixture: a tone, coturn's certificate)

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("loopback_ice")]

JITTER = 0.060
"""The largest delay the relay adds to a chunk, seconds (each is uniform in 0 to this)."""

STATS = """async () => {
  let concealed = 0, total = 0, delay = 0, emitted = 0;
  (await HC.audio.pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      concealed += s.concealedSamples || 0; total += s.totalSamplesReceived || 0;
      delay += s.jitterBufferDelay || 0; emitted += s.jitterBufferEmittedCount || 0;
    }
  });
  return { concealed, total, delay, emitted };
}"""


class JitterRelay:
    """TCP 127.0.0.1:port → ``upstream``, each chunk held 0–``jitter`` s, in order."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.jitter = 0.0
        self.chunks = 0
        self.port = 0

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        due = 0.0
        try:
            while chunk := await reader.read(65536):
                due = max(due, loop.time() + random.uniform(0, self.jitter))
                self.chunks += 1
                await asyncio.sleep(max(0.0, due - loop.time()))  # the chunk's own delay
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[JitterRelay]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            yield self


async def window(ana, relay: JitterRelay, jitter: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
    relay.jitter = jitter
    await asyncio.sleep(6.0)  # not a wait for a condition: the jitter buffer adapts
    before = await ana.evaluate(STATS)
    await asyncio.sleep(WINDOW)  # the measuring window
    after = await ana.evaluate(STATS)
    total = after["total"] - before["total"]
    assert total > 0.5 * WINDOW * 48_000, f"the listener got too few samples: {total}"
    emitted = after["emitted"] - before["emitted"]
    return {
        "concealed": (after["concealed"] - before["concealed"]) / total,
        "buffer_ms": 1000 * (after["delay"] - before["delay"]) / max(emitted, 1),
    }


async def test_the_floor_plays_through_a_jittery_link(
    start_node, invites, browser, assembly, turn_server: TurnServer, rules: Rules
) -> None:  # type: ignore[no-untyped-def]
    async with JitterRelay(turn_server.port).running() as relay:
        url = f"turn:127.0.0.1:{relay.port}?transport=tcp"
        node = await start_node(config=with_turn(assembly, [url]))
        rules.set(BLOCK_UDP)
        chair, ana = await chair_and_ana(browser, node, invites)
        await mic_on(chair)
        await ana.click("#listen-button")
        await ab.wait_peak(ana, True, 15)
        steady = await window(ana, relay, 0.0)
        chunks = relay.chunks
        jittery = await window(ana, relay, JITTER)
        assert relay.chunks > chunks, "the media went through the relay"
        await ab.wait_peak(ana, True, 5)  # still heard under jitter
        print(
            f"reach jitter: relayed over TCP, no added jitter: {steady['concealed']:.1%} concealed,"
            f" jitter buffer {steady['buffer_ms']:.0f} ms; 0-{JITTER * 1000:.0f} ms jitter:"
            f" {jittery['concealed']:.1%} concealed, jitter buffer {jittery['buffer_ms']:.0f} ms"
        )
        assert jittery["concealed"] <= 0.05, jittery
        assert jittery["buffer_ms"] > steady["buffer_ms"], "the jitter buffer grew to absorb it"
        await chair.close()
        await ana.close()
