"""Interpretation channels through real nodes and real aiortc peers.

Who is live, who coughs and who listens to what comes from the channels slice's commands
(air.take, handover.*, booth.cough, booth.input, channel.choose): the media layer re-routes
after each fold, without renegotiating any peer connection.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from server.client import Client

from .audio_helpers import (
    Ear,
    listen,
    loopback_ice,  # noqa: F401 (fixture)
    marker,
    opus_tone,
    publish,
    settled,
    steps,
    tagged,
)
from .conftest import timeout
from .waiting import eventually

pytestmark = pytest.mark.usefixtures("loopback_ice")


@pytest.fixture(params=[0, 2], ids=["in-process", "2-workers"])
def media_workers(request: pytest.FixtureRequest) -> int:
    """Each test runs with listeners in the node's process and on two media workers."""
    return int(request.param)


TAGS = {"floor": 1, "es": 2, "fr": 3, "es2": 4}


async def connect(node: Any, invites: Any, name: str, role: str, **extra: Any) -> Client:
    token = invites.mint(room="plenary", role=role, name=name, **extra)
    return await Client.connect(node.url, token)


def tags(ear: Ear, index: int = 0) -> set[int]:
    return {marker(h.payload)[0] for h in ear.on(index)}


async def test_es_listeners_never_get_fr_frames(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    chair = await connect(node, invites, "Chair", "moderator")
    ivan = await connect(node, invites, "Ivan", "interpreter", booth="es")
    flo = await connect(node, invites, "Flo", "interpreter", booth="fr")
    ana = await connect(node, invites, "Ana", "participant")
    bo = await connect(node, invites, "Bo", "participant")
    for interpreter in (ivan, flo):
        await interpreter.command("air.take")
    await ana.command("channel.choose", {"lang": "es"})
    await bo.command("channel.choose", {"lang": "fr"})
    ears = {"ana": await listen(ana), "bo": await listen(bo)}
    reply = await ana.rpc("rtc.under", on=True)
    assert reply["ok"]
    mics = {
        "floor": await publish(chair, "floor"),
        "es": await publish(ivan, "es"),
        "fr": await publish(flo, "fr"),
    }
    assert mics["es"].reply["on_air"] is True
    sent = {k: tagged(opus_tone(300 + 100 * TAGS[k], 50), TAGS[k]) for k in mics}
    await asyncio.gather(*(mics[k].play(sent[k]) for k in mics))
    es_heard = await ears["ana"].wait(0, 50, timeout(5))
    fr_heard = await ears["bo"].wait(0, 50, timeout(5))
    assert [h.payload for h in es_heard] == sent["es"]
    assert [h.payload for h in fr_heard] == sent["fr"]
    under = await ears["ana"].wait(1, 50, timeout(5))
    assert [h.payload for h in under] == sent["floor"], "the original underneath"
    await settled(node, list(ears.values()), packets_in=3 * 50)
    assert tags(ears["ana"]) == {TAGS["es"]} and tags(ears["bo"]) == {TAGS["fr"]}
    assert tags(ears["bo"], 1) == set(), "no original underneath unless asked"
    for p in (*ears.values(), *mics.values()):
        await p.close()
    for c in (chair, ivan, flo, ana, bo):
        await c.close()


async def test_channel_switch_without_renegotiation(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    ivan = await connect(node, invites, "Ivan", "interpreter", booth="es")
    flo = await connect(node, invites, "Flo", "interpreter", booth="fr")
    ana = await connect(node, invites, "Ana", "participant")
    for interpreter in (ivan, flo):
        await interpreter.command("air.take")
    await ana.command("channel.choose", {"lang": "es"})
    ear = await listen(ana)
    es, fr = await publish(ivan, "es"), await publish(flo, "fr")
    playing = asyncio.gather(
        es.play(tagged(opus_tone(440, 100), 2)), fr.play(tagged(opus_tone(660, 100), 3))
    )
    await ear.wait(0, 30, timeout(5))
    switched_at = time.monotonic()
    await ana.command("channel.choose", {"lang": "fr"})
    await playing
    heard = ear.on(0)
    first_fr = next(h for h in heard if marker(h.payload)[0] == 3)
    assert first_fr.at - switched_at <= 0.1, (
        "a channel switch (command, log, fold, re-route) takes effect within 100 ms"
    )
    assert [marker(h.payload)[0] for h in heard] == sorted(marker(h.payload)[0] for h in heard)
    assert len({h.ssrc for h in heard}) == 1 and ear.offers == 1, "same track, no renegotiation"
    assert min(steps(heard)) >= 960 and max(steps(heard)) <= 3 * 960, (
        f"the RTP clock runs on across the switch: {sorted(steps(heard))}"
    )
    for p in (ear, es, fr):
        await p.close()
    for c in (ivan, flo, ana):
        await c.close()


async def test_handover_cough_and_fallback(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    chair = await connect(node, invites, "Chair", "moderator")
    ivan = await connect(node, invites, "Ivan", "interpreter", booth="es")
    ines = await connect(node, invites, "Ines", "interpreter", booth="es")
    ana = await connect(node, invites, "Ana", "participant")
    await ivan.command("air.take")
    await ana.command("channel.choose", {"lang": "es"})
    ear = await listen(ana)
    a, b = await publish(ivan, "es"), await publish(ines, "es")
    assert a.reply["on_air"] is True and b.reply["on_air"] is False, "the partner stands by"
    floor = await publish(chair, "floor")
    pa, pb = tagged(opus_tone(440, 150), 2), tagged(opus_tone(550, 150), 4)
    pf = tagged(opus_tone(330, 150), 1)

    async def script() -> None:  # not synchronisation: commands at set times of the speech
        await asyncio.sleep(0.8)
        await ines.command("handover.request")
        await asyncio.sleep(0.2)
        await ivan.command("handover.accept")  # one event: ines on air, ivan off
        await asyncio.sleep(0.6)
        await ines.command("booth.cough", {"on": True})
        await asyncio.sleep(0.6)
        await ines.command("booth.cough", {"on": False})
        await asyncio.sleep(0.4)
        await ines.command("air.release")  # nobody on air: the floor (fallback original)

    await asyncio.gather(a.play(pa), b.play(pb), floor.play(pf), script())
    heard = ear.on(0)
    who = [marker(h.payload)[0] for h in heard]
    runs = [who[0]] + [t for prev, t in zip(who, who[1:], strict=False) if t != prev]
    assert runs == [2, 4, 1], f"ivan, then ines after the handover, then the floor: {runs}"
    ines_seq = [marker(h.payload)[1] for h in heard if marker(h.payload)[0] == 4]
    gap = max(b - a for a, b in zip(ines_seq, ines_seq[1:], strict=False))
    assert 20 <= gap <= 40, f"a cough of ~0.6 s silences ines on the server (gap {gap} frames)"
    assert len({h.ssrc for h in heard}) == 1 and ear.offers == 1
    assert max(steps(heard)) <= 40 * 960 and min(steps(heard)) >= 960
    for p in (ear, a, b, floor):
        await p.close()
    for c in (chair, ivan, ines, ana):
        await c.close()


async def test_interpreters_hear_floor_or_relay_never_their_own(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    chair = await connect(node, invites, "Chair", "moderator")
    ivan = await connect(node, invites, "Ivan", "interpreter", booth="es")
    flo = await connect(node, invites, "Flo", "interpreter", booth="fr")
    await ivan.command("air.take")
    await flo.command("air.take")
    refused = await ivan.request("booth.input", {"input": "es"})
    assert refused["code"] == "relay_loop", "the booth slice refuses one's own channel"
    await flo.command("booth.input", {"input": "es"})
    ears = {"ivan": await listen(ivan), "flo": await listen(flo)}
    mics = {"floor": await publish(chair, "floor"), "es": await publish(ivan, "es")}
    await asyncio.gather(*(m.play(tagged(opus_tone(440, 40), TAGS[k])) for k, m in mics.items()))
    await settled(node, list(ears.values()), packets_in=2 * 40)
    assert tags(ears["ivan"]) == {TAGS["floor"]}, "es hears the floor, not itself"
    assert tags(ears["flo"]) == {TAGS["es"]}, "fr relays from es"
    for p in (*ears.values(), *mics.values()):
        await p.close()
    for c in (chair, ivan, flo):
        await c.close()


@pytest.mark.redis
async def test_interpreter_on_node_a_heard_on_node_b(start_node, invites, redis_url) -> None:  # type: ignore[no-untyped-def]
    import redis.asyncio as aioredis

    a, b = await start_node(redis_url), await start_node(redis_url)
    ivan = await connect(a, invites, "Ivan", "interpreter", booth="es")
    ana = await connect(b, invites, "Ana", "participant")
    await ivan.command("air.take")
    await ana.command("channel.choose", {"lang": "es"})
    await ana.wait_for(lambda s: s["channels"]["channels"]["es"]["live"] == ivan.me)
    ear = await listen(ana)
    r = aioredis.Redis.from_url(redis_url)
    channels = await eventually(
        lambda: r.pubsub_channels("hc:*:audio:*"), message="node B to subscribe to audio"
    )
    assert channels == [b"hc:{plenary}:audio:es"], (
        "node B holds only the channel its listener needs (no floor underneath asked)"
    )
    mic = await publish(ivan, "es")
    sent = tagged(opus_tone(440, 60), 2)
    await mic.play(sent)
    heard = await ear.wait(0, 60, timeout(5))
    assert [h.payload for h in heard] == sent
    for p in (ear, mic):
        await p.close()
    for c in (ivan, ana):
        await c.close()
    await r.aclose()
