"""The bus link of one room: frames out through a bounded outbox, in with sequence accounting,
subscriptions exactly for the sources in use (on the in-process bus, no WebRTC)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from server.media import buslink
from server.media.buslink import BusLink
from server.media.kind import AUDIO
from server.media.relay import Frame
from server.node.backends import open_backends
from server.node.bus import MemoryBus
from server.node.metrics import Metrics

from .conftest import timeout


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return float(metrics.registry.get_sample_value(name, labels or None) or 0.0)


def frame(pub: str, seq: int) -> Frame:
    return Frame(pub, "pid-" + pub, seq, seq * 960, bytes([seq % 256]) * 3, 40)


async def until(predicate, seconds: float = 2.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout(seconds)):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_frames_cross_from_one_link_to_another_for_subscribed_sources_only() -> None:
    bus = MemoryBus()
    heard: list[tuple[str, int]] = []
    out_metrics, in_metrics = Metrics(), Metrics()
    a = BusLink(bus, "plenary", AUDIO, out_metrics, lambda *_: None, lambda pub: pub == "a.1")
    b = BusLink(
        bus,
        "plenary",
        AUDIO,
        in_metrics,
        lambda s, f, now: heard.append((s, f.seq)),
        lambda _: False,
    )
    async with a, b:
        b.subscribe_exactly(["floor"])
        await until(lambda: "hc:{plenary}:audio:floor" in bus._subs)
        for seq in (1, 2):
            a.send("floor", frame("a.1", seq))
        a.send("es", frame("a.1", 1))  # nobody on B needs the Spanish channel
        await until(lambda: len(heard) == 2)
        await asyncio.sleep(0.05)
        assert heard == [("floor", 1), ("floor", 2)]
        assert sample(out_metrics, "hemicycle_audio_bus_frames_total", direction="out") == 3
        b.subscribe_exactly([])
        await until(lambda: "hc:{plenary}:audio:floor" not in bus._subs)
        assert b.subscribed == {}
    assert bus._subs == {}, "leaving the link ends its subscriptions"


async def test_sequence_accounting_and_forgetting_idle_publishers() -> None:
    heard: list[int] = []
    metrics = Metrics()
    link = BusLink(
        MemoryBus(), "r", AUDIO, metrics, lambda s, f, now: heard.append(f.seq), lambda p: p == "me"
    )
    for seq in (1, 2, 5, 4, 6):
        link.received("floor", frame("them", seq).to_bus())
    link.received("floor", frame("me", 9).to_bus())  # our own frame, back from the bus
    link.received("floor", b"\x93garbage")
    assert heard == [1, 2, 5, 6]
    assert sample(metrics, "hemicycle_audio_bus_lost_total") == 2  # 3 and 4 missing at 5
    assert sample(metrics, "hemicycle_audio_bus_reordered_total") == 1  # 4, late
    assert sample(metrics, "hemicycle_audio_bus_frames_total", direction="bad") == 1
    seen = link.expected["them"][1]
    link.forget_idle(seen + buslink.FORGET_AFTER - 1)
    assert "them" in link.expected
    link.forget_idle(seen + buslink.FORGET_AFTER + 1)
    assert link.expected == {}
    link.received("floor", frame("them", 1).to_bus())  # the same id starting again
    assert heard[-1] == 1


async def test_a_stuck_bus_loses_the_oldest_frames_first(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(buslink, "OUTBOX", 3)
    metrics = Metrics()
    link = BusLink(MemoryBus(), "r", AUDIO, metrics, lambda *_: None, lambda _: True)
    for seq in range(1, 6):  # not entered: nothing publishes, the outbox fills
        link.send("floor", frame("me", seq))
    assert [Frame.from_bus(d).seq for _, d in link._outbox] == [3, 4, 5]
    assert sample(metrics, "hemicycle_audio_bus_frames_total", direction="dropped") == 2


@pytest.mark.redis
async def test_frames_queued_together_cross_redis_in_one_round_trip_in_order(
    redis_url: str,
) -> None:
    """What is queued while the link publishes goes in the next round trip, all of it, in
    order: one round trip per frame capped a link at 1/RTT frames a second, and video's few
    hundred packets a second backed up behind a loaded Redis (bench/panel.py)."""
    backends = open_backends(redis_url)
    bus = backends.bus
    trips: list[int] = []
    publish_many = bus.publish_many

    async def counted(messages: Sequence[tuple[str, bytes]]) -> None:
        trips.append(len(messages))  # counts the round trips; the real Redis carries them
        await publish_many(messages)

    bus.publish_many = counted  # type: ignore[method-assign]
    heard: list[int] = []
    out = BusLink(bus, "r", AUDIO, Metrics(), lambda *_: None, lambda pub: pub == "a.1")
    into = BusLink(
        bus, "r", AUDIO, Metrics(), lambda s, f, now: heard.append(f.seq), lambda _: False
    )
    try:
        async with out, into:
            into.subscribe_exactly(["floor"])
            channel = AUDIO.bus_channel("r", "floor")
            assert backends.redis is not None
            async with asyncio.timeout(timeout(5)):
                while (await backends.redis.pubsub_numsub(channel))[0][1] < 1:
                    await asyncio.sleep(0.01)
            for seq in range(1, 201):  # one burst: the publishing task has not run yet
                out.send("floor", frame("a.1", seq))
            await until(lambda: len(heard) == 200, 5)
            assert heard == list(range(1, 201))
            assert trips == [200], f"{len(trips)} round trips for one burst: {trips[:10]}"
            out.send("floor", frame("a.1", 201))
            await until(lambda: len(heard) == 201)
            assert trips == [200, 1]
    finally:
        await backends.close()
