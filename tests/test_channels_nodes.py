"""Channels and booths over the wire: real uvicorn nodes, real redis-server, real sockets."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import httpx
import pytest

from server import channels
from server.client import Client
from server.node.auth import Invites
from server.node.config import Assembly

from .conftest import NodeFactory, timeout
from .waiting import same_end

ROOM = "plenary"


def quick(assembly: Assembly, **extra: Any) -> Assembly:
    """The demo assembly with short handover and grace periods in the plenary."""
    room = assembly.rooms[ROOM]
    rooms = {**assembly.rooms, ROOM: dataclasses.replace(room, extra={**room.extra, **extra})}
    return dataclasses.replace(assembly, rooms=rooms)


def interpreter(invites: Invites, name: str, booth: str) -> str:
    return invites.mint(room=ROOM, role="interpreter", name=name, booth=booth, pair=["en", booth])


def live(lang: str) -> Any:
    return lambda s: s["channels"]["channels"][lang]["live"]


async def test_wire_refusals_carry_codes_and_change_nothing(
    start_node: NodeFactory, invites: Invites
) -> None:
    node = await start_node()
    es1 = await Client.connect(node.url, interpreter(invites, "Elena", "es"))
    es2 = await Client.connect(node.url, interpreter(invites, "Pablo", "es"))
    fr1 = await Client.connect(node.url, interpreter(invites, "Claire", "fr"))
    ana = await Client.connect(
        node.url, invites.mint(room=ROOM, role="participant", name="Ana", lang="es")
    )
    try:
        await es1.command("air.take")
        cases = [
            (ana, "caption.post", {"lang": "es", "text": "hola"}, "forbidden"),
            (es1, "caption.post", {"lang": "es", "text": "x" * 1025}, "caption_too_long"),
            (es2, "air.take", {}, "channel_occupied"),
            (es2, "handover.accept", {}, "no_handover"),
            (fr1, "air.take", {"lang": "es"}, "not_your_booth"),
            (ana, "channel.choose", {"lang": "de"}, "no_such_channel"),
        ]
        for client, name, args, code in cases:
            reply = await client.request(name, args)
            assert not reply["ok"] and reply["code"] == code, (name, reply)
        await fr1.command("air.take")
        await fr1.command("booth.input", {"input": "es"})
        reply = await es1.request("booth.input", {"input": "fr"})
        assert reply["code"] == "relay_loop" and "es → fr → es" in reply["message"]
        for _ in range(channels.CAPTION_RATE):
            await es1.command("caption.post", {"lang": "es", "text": "uno"})
        reply = await es1.request("caption.post", {"lang": "es", "text": "demasiado"})
        assert reply["code"] == "caption_too_fast", reply
        state = node.node.hubs[ROOM].state["channels"]
        assert state["channels"]["es"]["live"] == es1.me
        assert state["interpreters"][es1.me]["input"] == "floor"
        assert len(state["captions"]["es"]) == channels.CAPTION_RATE
    finally:
        for c in (es1, es2, fr1, ana):
            await c.close()


async def test_choice_survives_reconnect(start_node: NodeFactory, invites: Invites) -> None:
    node = await start_node()
    token = invites.mint(room=ROOM, role="participant", name="Ana", lang="es")
    ana = await Client.connect(node.url, token)
    await ana.wait_for(lambda s: s["channels"]["choice"].get(ana.me) == "es", timeout(3))
    await ana.command("channel.choose", {"lang": "fr"})
    await ana.close()
    again = await Client.connect(node.url, token, codec="json")
    try:
        assert again.state["channels"]["choice"] == {again.me: "fr"}
    finally:
        await again.close()


@pytest.mark.redis
async def test_two_nodes_handover_and_captions_in_order(
    start_node: NodeFactory, redis_url: str, invites: Invites
) -> None:
    a = await start_node(redis_url, name="a")
    b = await start_node(redis_url, name="b")
    es1 = await Client.connect(a.url, interpreter(invites, "Elena", "es"))
    es2 = await Client.connect(b.url, interpreter(invites, "Pablo", "es"))
    listener = await Client.connect(
        b.url, invites.mint(room=ROOM, role="participant", name="Ana", lang="es")
    )
    watcher = await Client.connect(a.url, invites.mint(room=ROOM, role="moderator", name="Chair"))
    cap_a = await Client.connect(a.url, invites.mint(room=ROOM, role="captioner", name="C1"))
    cap_b = await Client.connect(b.url, invites.mint(room=ROOM, role="captioner", name="C2"))
    clients = (es1, es2, listener, watcher, cap_a, cap_b)
    try:
        for c in clients:
            await c.wait_for(
                lambda s: (
                    es1.me in s["channels"]["interpreters"]
                    and es2.me in s["channels"]["interpreters"]
                ),
                timeout(5),
            )
        await es1.command("air.take")
        await listener.wait_for(lambda s: live("es")(s) == es1.me, timeout(5))
        await es2.command("handover.request")  # on node b, to the live one on node a
        await es1.wait_for(lambda s: s["channels"]["channels"]["es"]["handover"], timeout(5))
        await es1.command("handover.accept")
        await listener.wait_for(lambda s: live("es")(s) == es2.me, timeout(5))
        handed = [
            e
            for m in listener.received
            if m["type"] == "events"
            for e in m["events"]
            if e["type"] == "air.handed"
        ]
        assert handed == [
            {
                "type": "air.handed",
                "lang": "es",
                "outgoing": es1.me,
                "incoming": es2.me,
                "ts": handed[0]["ts"],
            }
        ], "one swap event, no gap nor overlap"
        assert not any(
            e["type"] == "air.released"
            for m in listener.received
            if m["type"] == "events"
            for e in m["events"]
        )

        # two captioners on two nodes at once, plus the live interpreter: one order everywhere
        async def post(c: Client, lang: str, tag: str, n: int) -> None:
            for i in range(n):
                await c.command("caption.post", {"lang": lang, "text": f"{tag}{i}"})

        await asyncio.gather(
            post(cap_a, "es", "a", 4), post(cap_b, "es", "b", 4), post(es2, "es", "i", 4)
        )
        total = 12
        for c in clients:
            await c.wait_for(lambda s: len(s["channels"]["captions"]["es"]) >= total, timeout(5))
        orders = [
            [(x["n"], x["text"]) for x in c.state["channels"]["captions"]["es"]] for c in clients
        ]
        assert all(o == orders[0] for o in orders), orders
        assert [n for n, _ in orders[0]] == list(range(1, total + 1))
        seen = [
            [
                e["text"]
                for m in c.received
                if m["type"] == "events"
                for e in m["events"]
                if e["type"] == "caption"
            ]
            for c in clients
        ]
        assert all(s == seen[0] for s in seen) and len(seen[0]) == total
        await same_end(a.node.hubs[ROOM], b.node.hubs[ROOM])
        assert a.node.hubs[ROOM].state == b.node.hubs[ROOM].state
    finally:
        for c in clients:
            await c.close()


@pytest.mark.redis
async def test_disconnect_grace_and_expiry_across_nodes(
    start_node: NodeFactory, redis_url: str, invites: Invites, assembly: Assembly
) -> None:
    config = quick(assembly, grace_seconds=0.4, handover_seconds=0.3)
    a = await start_node(redis_url, config=config, name="a")
    b = await start_node(redis_url, config=config, name="b")
    es1 = await Client.connect(a.url, interpreter(invites, "Elena", "es"))
    es2 = await Client.connect(b.url, interpreter(invites, "Pablo", "es"))
    chair = await Client.connect(b.url, invites.mint(room=ROOM, role="moderator", name="C"))
    try:
        await es1.command("air.take")
        await es2.wait_for(lambda s: live("es")(s) == es1.me, timeout(5))
        await es2.command("handover.request")
        await chair.wait_for(lambda s: s["channels"]["channels"]["es"]["handover"], timeout(2))
        await chair.wait_for(
            lambda s: s["channels"]["channels"]["es"]["handover"] is None, timeout(3)
        )
        assert live("es")(chair.state) == es1.me, "an unanswered request expires"
        await es1.close()
        away = await chair.wait_for(lambda s: s["channels"]["channels"]["es"]["away"], timeout(3))
        assert away["pid"] == es1.me
        await chair.wait_for(lambda s: live("es")(s) is None, timeout(3))
        last_off = chair.state["channels"]["channels"]["es"]["last_off"]
        assert last_off["pid"] == es1.me and last_off["reason"] == "disconnected"
        await same_end(a.node.hubs[ROOM], b.node.hubs[ROOM])
        assert a.node.hubs[ROOM].state == b.node.hubs[ROOM].state
    finally:
        for c in (es2, chair):
            await c.close()


async def test_chats_and_signals_reach_only_whom_they_concern(
    start_node: NodeFactory, invites: Invites
) -> None:
    node = await start_node()
    es1 = await Client.connect(node.url, interpreter(invites, "Elena", "es"))
    es2 = await Client.connect(node.url, interpreter(invites, "Pablo", "es"))
    fr1 = await Client.connect(node.url, interpreter(invites, "Claire", "fr"))
    chair = await Client.connect(node.url, invites.mint(room=ROOM, role="moderator", name="C"))
    speaker = await Client.connect(node.url, invites.mint(room=ROOM, role="panelist", name="Sokha"))
    other = await Client.connect(node.url, invites.mint(room=ROOM, role="participant", name="Bob"))
    clients = (es1, es2, fr1, chair, speaker, other)
    try:
        await chair.command("floor.grant", {"pid": speaker.me})
        await es1.command("chat.post", {"chat": "booth", "text": "¿cambiamos?"})
        await fr1.command("chat.post", {"chat": "all", "text": "sound ok?"})
        await es1.command("booth.signal", {"preset": "slow_down"})
        await speaker.wait_for(lambda s: s["channels"]["signals"], timeout(3))
        await es2.wait_for(
            lambda s: s["channels"]["chats"].get("es") and s["channels"]["chats"].get("all"),
            timeout(3),
        )
        await chair.wait_for(
            lambda s: s["channels"]["chats"]["es"] and s["channels"]["signals"], timeout(3)
        )
        await other.command("channel.choose", {"lang": "fr"})  # a last frame to wait on
        await other.wait_for(lambda s: s["channels"]["choice"].get(other.me) == "fr")
        assert fr1.state["channels"]["chats"].get("es") in (None, [])
        assert other.state["channels"]["chats"] == {}
        assert other.state["channels"]["signals"] == []
        assert speaker.state["channels"]["signals"][0]["preset"] == "slow_down"
    finally:
        for c in clients:
            await c.close()


async def test_transcript_export(start_node: NodeFactory, invites: Invites) -> None:
    node = await start_node()
    chair_token = invites.mint(room=ROOM, role="moderator", name="Chair")
    cap = await Client.connect(node.url, invites.mint(room=ROOM, role="captioner", name="C"))
    es1 = await Client.connect(node.url, interpreter(invites, "Elena", "es"))
    try:
        await cap.command("caption.post", {"lang": "original", "text": "Good <morning> & all"})
        await es1.command("air.take")
        await es1.command("caption.post", {"lang": "es", "text": "Buenos días"})
        await cap.command("caption.post", {"lang": "original", "text": "Second line"})
        async with httpx.AsyncClient(base_url=node.url) as http:
            auth = {"Authorization": "Bearer " + chair_token}
            r = await http.get(f"/api/transcripts/{ROOM}/original", headers=auth)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/vtt")
            body = r.text
            assert body.startswith("WEBVTT - Plenary, original\n")
            assert "Good &lt;morning&gt; &amp; all" in body and "Buenos" not in body
            assert "1\n00:00:00.000 --> 00:00:00." in body and "\n2\n" in body
            r = await http.get(
                f"/api/transcripts/{ROOM}/es", params={"format": "txt"}, headers=auth
            )
            assert r.status_code == 200
            assert r.text.endswith("Z  Buenos días\n") and r.text.count("\n") == 1
            r = await http.get(f"/api/transcripts/{ROOM}/zz", headers=auth)
            assert (r.status_code, r.json()["code"]) == (404, "no_such_channel")
            r = await http.get(
                f"/api/transcripts/{ROOM}/es", params={"format": "doc"}, headers=auth
            )
            assert (r.status_code, r.json()["code"]) == (400, "bad_args")
            participant = invites.mint(room=ROOM, role="participant", name="P")
            r = await http.get(
                f"/api/transcripts/{ROOM}/es", headers={"Authorization": "Bearer " + participant}
            )
            assert (r.status_code, r.json()["code"]) == (403, "forbidden")
            r = await http.get(f"/api/transcripts/{ROOM}/es")
            assert (r.status_code, r.json()["code"]) == (401, "bad_token")
    finally:
        await cap.close()
        await es1.close()


def test_demo_prints_two_interpreters_per_booth_and_a_captioner(assembly: Assembly) -> None:
    from urllib.parse import urlsplit

    from server.cli import demo_links
    from server.node.config import Settings

    from .conftest import SECRET

    links = demo_links(Settings(secret=SECRET), assembly)
    verify = Invites(SECRET).verify
    claims = [verify(urlsplit(link).fragment.removeprefix("t=")) for _, link in links]
    booths: dict[str, list[str]] = {}
    for c in claims:
        if c["role"] == "interpreter":
            assert c["room"] == ROOM and c["pair"] == ["en", c["booth"]]
            booths.setdefault(c["booth"], []).append(c["name"])
    assert {k: len(v) for k, v in booths.items()} == {"es": 2, "fr": 2, "ru": 2, "ils": 2}
    assert any(c["role"] == "captioner" for c in claims)
    assert any("Interpreter, es booth" in label for label, _ in links)
