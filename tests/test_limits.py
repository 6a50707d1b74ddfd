"""Limits per person: connections (across nodes), one frame rate over all of a person's
connections, every frame type counted, and a close past the hard limit."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from websockets.asyncio.client import connect

from server.client import Client
from server.node.auth import Invites
from server.node.backends import Backends
from server.node.sessions import CLOSE_DISPLACED, CLOSE_TOO_FAST
from server.web import halfopen

from .conftest import NodeFactory


def ws_url(base: str, token: str) -> str:
    return base.replace("http", "ws", 1) + "/ws?token=" + token


async def wait_closed(client: Client, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while client.close_code is None:
            await asyncio.sleep(0.02)


async def test_a_fourth_connection_closes_the_oldest(
    start_node: NodeFactory, invites: Invites
) -> None:
    node = await start_node()
    token = invites.mint(room="plenary", role="participant", name="Sokha Chan", org="aple-kh")
    tabs = [await Client.connect(node.url, token) for _ in range(3)]
    pid = tabs[0].me
    await tabs[2].wait_for(lambda s: len(s["core"]["people"][pid]["conns"]) == 3)
    fourth = await Client.connect(node.url, token)
    await wait_closed(tabs[0])
    assert tabs[0].close_code == CLOSE_DISPLACED
    assert [e["code"] for e in tabs[0].errors] == ["displaced"]
    conns = [t.you["conn"] for t in (*tabs[1:], fourth)]
    await fourth.wait_for(lambda s: s["core"]["people"][pid]["conns"] == conns)
    for tab in (*tabs[1:], fourth):  # the three newest still serve
        assert tab.close_code is None
        assert (await tab.request("hand.lower"))["code"] == "hand_not_raised"
    for tab in (*tabs[1:], fourth):
        await tab.close()


async def test_the_cap_holds_across_nodes(
    start_node: NodeFactory, invites: Invites, shared_memory: Backends
) -> None:
    a = await start_node(shared_memory, name="A")
    b = await start_node(shared_memory, name="B")
    token = invites.mint(room="plenary", role="participant", name="Ana")
    on_a = await Client.connect(a.url, token)
    on_b = [await Client.connect(b.url, token) for _ in range(2)]
    pid = on_a.me
    await on_a.wait_for(lambda s: len(s["core"]["people"][pid]["conns"]) == 3)
    await asyncio.sleep(0.2)
    assert on_a.close_code is None
    # The fourth joins on B; the oldest is on A, and A closes it: both folded the join.
    fourth = await Client.connect(b.url, token)
    await wait_closed(on_a)
    assert on_a.close_code == CLOSE_DISPLACED
    kept = [c.you["conn"] for c in (*on_b, fourth)]
    await fourth.wait_for(lambda s: s["core"]["people"][pid]["conns"] == kept)
    assert all(c.close_code is None for c in (*on_b, fourth))
    for c in (*on_b, fourth):
        await c.close()


async def test_one_rate_for_all_of_a_persons_connections(
    start_node: NodeFactory, invites: Invites
) -> None:
    node = await start_node(settings={"command_rate": 1, "command_burst": 20})
    token = invites.mint(room="plenary", role="participant", name="Ana")
    one, two = await Client.connect(node.url, token), await Client.connect(node.url, token)
    bob = await Client.connect(
        node.url, invites.mint(room="plenary", role="participant", name="Bob")
    )
    first = await asyncio.gather(*(one.request("hand.lower") for _ in range(15)))
    second = await asyncio.gather(*(two.request("hand.lower") for _ in range(15)))
    codes = [r["code"] for r in first + second]
    assert codes.count("rate_limited") >= 9, codes  # 30 sent, about 20 allowed in all
    assert all(r["code"] == "hand_not_raised" for r in first[:15]), first
    # Someone else has their own bucket.
    assert (await bob.request("hand.lower"))["code"] == "hand_not_raised"
    for c in (one, two, bob):
        await c.close()


async def test_pings_and_bad_frames_count_and_a_flood_is_closed(
    start_node: NodeFactory, invites: Invites
) -> None:
    node = await start_node(settings={"command_rate": 1, "command_burst": 10, "rate_strikes": 10})
    token = invites.mint(room="plenary", role="participant", name="Ana")
    async with connect(ws_url(node.url, token), subprotocols=["hemicycle.json"]) as ws:  # type: ignore[list-item]
        assert json.loads(await ws.recv())["type"] == "welcome"
        await ws.send(json.dumps({"type": "ping", "echo": 1}))
        for _ in range(9):
            await ws.send("{not json")
        await ws.send(json.dumps({"type": "ping", "echo": 2}))  # the 11th frame
        seen: list[dict[str, object]] = []
        while len([m for m in seen if m["type"] in ("pong", "error")]) < 11:
            seen.append(json.loads(await ws.recv()))
        kinds = [(m["type"], m.get("code")) for m in seen if m["type"] in ("pong", "error")]
        assert kinds[0] == ("pong", None)
        assert kinds[1:10] == [("error", "bad_frame")] * 9
        assert kinds[10] == ("error", "rate_limited")
        # Keep going: 10 more refused frames are tolerated, then the socket is closed.
        for i in range(12):
            try:
                await ws.send(json.dumps({"type": "ping", "echo": i}))
            except Exception:
                break
        async with asyncio.timeout(5):
            while True:
                try:
                    await ws.recv()
                except Exception:
                    break
        assert ws.close_code == CLOSE_TOO_FAST


async def test_new_connections_per_address_are_rate_limited(
    start_node: NodeFactory, invites: Invites
) -> None:
    node = await start_node(settings={"conn_rate": 0.5, "conn_burst": 4})
    token = invites.mint(room="plenary", role="participant", name="Watcher")
    codes = []
    for _ in range(6):
        async with connect(ws_url(node.url, token), subprotocols=["hemicycle.json"]) as ws:  # type: ignore[list-item]
            first = json.loads(await ws.recv())
            codes.append(first.get("code", first["type"]))
            if first["type"] == "error":
                with contextlib.suppress(Exception):
                    await ws.recv()
                assert ws.close_code == CLOSE_TOO_FAST
    assert codes == ["welcome"] * 4 + ["rate_limited"] * 2, codes


async def test_half_open_requests_are_closed(
    start_node: NodeFactory, invites: Invites, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert halfopen.HEAD_TIMEOUT <= 10
    monkeypatch.setattr(halfopen, "HEAD_TIMEOUT", 1.0)
    node = await start_node(**halfopen.uvicorn_options())
    token = invites.mint(room="plenary", role="participant", name="Ana")
    opened = []
    halves = [
        b"",  # connects and says nothing
        b"GET /ws?tok",  # half a request line
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n",  # headers never ended
    ]
    for i in range(30):
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        writer.write(halves[i % len(halves)])
        await writer.drain()
        opened.append((reader, writer))
    started = asyncio.get_running_loop().time()
    # A whole request on another connection is served meanwhile, and a WebSocket stays.
    ana = await Client.connect(node.url, token)
    for reader, _ in opened:
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # EOF: the node closed it
    elapsed = asyncio.get_running_loop().time() - started
    assert elapsed < 3, elapsed
    await asyncio.sleep(1.2)
    assert (await ana.request("hand.lower"))["code"] == "hand_not_raised"
    # A keep-alive connection that starts a second request and stalls is closed too.
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 ")
    writer.write(b"GET /healthz HTTP/1.1\r\nHo")
    async with asyncio.timeout(5):
        while await reader.read(65536):
            pass
    writer.close()
    for _, w in opened:
        w.close()
    await ana.close()


async def test_reconnects_within_the_grace_log_nothing(
    start_node: NodeFactory, invites: Invites
) -> None:
    node = await start_node(settings={"reconnect_grace": 1.0})
    hub = node.node.hubs["plenary"]
    chair = await Client.connect(
        node.url, invites.mint(room="plenary", role="moderator", name="Chair")
    )
    token = invites.mint(room="plenary", role="participant", name="Ana", lang="en")
    ana = await Client.connect(node.url, token)
    pid, conn = ana.me, ana.you["conn"]
    await chair.wait_for(lambda s: s["core"]["people"].get(pid, {}).get("conns") == [conn])
    await asyncio.sleep(0.5)  # the chair's join brings entries of its own (ballot keys)
    seen = len(chair.received)
    before = hub.state["meta"]["last"]
    for _ in range(50):  # connect/close cycles, each within the grace
        await ana.close()
        ana = await Client.connect(node.url, token)
        assert ana.you["conn"] == conn  # the same connection id, taken over
    assert hub.state["meta"]["last"] == before, list(hub.recent)[-3:]
    presence = [
        e["type"]
        for m in chair.received[seen:]
        if m["type"] == "events"
        for e in m["events"]
        if e["type"] in ("person.joined", "person.left")
    ]
    assert presence == [], presence
    # A reconnect with another language is a join of the same connection, not a leave.
    await ana.close()
    ana = await Client.connect(
        node.url, invites.mint(room="plenary", role="participant", name="Ana", lang="fr", pid=pid)
    )
    assert ana.you["conn"] == conn
    await chair.wait_for(lambda s: s["core"]["people"][pid]["lang"] == "fr")
    assert chair.state["core"]["people"][pid]["conns"] == [conn]
    await ana.close()
    await asyncio.sleep(1.5)  # past the grace: now the leave is logged
    await chair.wait_for(lambda s: s["core"]["people"][pid]["conns"] == [])
    ana = await Client.connect(node.url, token)
    assert ana.you["conn"] != conn
    await chair.wait_for(lambda s: s["core"]["people"][pid]["conns"] == [ana.you["conn"]])
    # Closing the node logs the lingering leaves at once.
    await ana.close()
    await asyncio.sleep(0.1)
    assert hub.lingering
    await node.stop()
    assert hub.state["core"]["people"][pid]["conns"] == []


async def test_a_crashed_nodes_lingering_connections_are_retired(
    start_node: NodeFactory, redis_url: str, invites: Invites, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection closed within the grace on node B, then B killed (SIGKILL): the leave B
    owed is never logged by B, and node A retires the connection (``Node.reap``)."""
    import os
    import signal
    import subprocess
    import sys

    import server.node.app as app_module

    from .conftest import SECRET, free_port, timeout

    monkeypatch.setattr(app_module, "HEARTBEAT_EVERY", 0.2)
    a = await start_node(redis_url, name="A")
    port = free_port()
    env = {
        **os.environ,
        "HEMICYCLE_SECRET": SECRET,
        "HEMICYCLE_NODE": "B",
        "HEMICYCLE_RECONNECT_GRACE": "60",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--backend", redis_url],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        token = invites.mint(room="plenary", role="participant", name="Sokha")
        async with asyncio.timeout(timeout(20)):
            while True:
                try:
                    sokha = await Client.connect(url, token)
                    break
                except OSError:
                    await asyncio.sleep(0.1)
        hub = a.node.hubs["plenary"]
        pid = sokha.me
        async with asyncio.timeout(timeout(5)):
            while not hub.state["core"]["people"].get(pid, {}).get("conns"):
                await asyncio.sleep(0.02)
        await sokha.close()
        await asyncio.sleep(1.0)
        assert hub.state["core"]["people"][pid]["conns"], "the leave waits for the grace"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        async with asyncio.timeout(timeout(app_module.HEARTBEAT_TTL + 5)):
            while hub.state["core"]["people"][pid]["conns"]:
                await asyncio.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_limit_settings_from_the_environment() -> None:
    from server.errors import ConfigError
    from server.node.config import Settings

    s = Settings.from_env({})
    assert (s.conns_per_person, s.command_rate, s.command_burst, s.rate_strikes) == (3, 10, 30, 30)
    assert (s.conn_rate, s.conn_burst, s.reconnect_grace) == (5, 60, 5)
    assert s.loopback_media  # auto, and the default bind address is 127.0.0.1
    s = Settings.from_env(
        {
            "HEMICYCLE_CONNS_PER_PERSON": "2",
            "HEMICYCLE_CONN_RATE": "1.5",
            "HEMICYCLE_RECONNECT_GRACE": "0",
            "HEMICYCLE_HOST": "0.0.0.0",
        }
    )
    assert (s.conns_per_person, s.conn_rate, s.reconnect_grace) == (2, 1.5, 0)
    assert not s.loopback_media  # auto on a public address
    assert Settings.from_env({"HEMICYCLE_HOST": "::1"}).loopback_media
    assert Settings.from_env({"HEMICYCLE_MEDIA_LOOPBACK": "false"}).loopback_media is False
    assert Settings.from_env(
        {"HEMICYCLE_MEDIA_LOOPBACK": "true", "HEMICYCLE_HOST": "0.0.0.0"}
    ).loopback_media
    for key, value in (
        ("HEMICYCLE_CONNS_PER_PERSON", "0"),
        ("HEMICYCLE_CONN_BURST", "-1"),
        ("HEMICYCLE_RATE_STRIKES", "many"),
        ("HEMICYCLE_RECONNECT_GRACE", "600"),
        ("HEMICYCLE_MEDIA_LOOPBACK", "maybe"),
    ):
        with pytest.raises(ConfigError) as err:
            Settings.from_env({key: value})
        assert err.value.key == key
