"""Two uvicorn nodes sharing one real redis-server."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from server import fold
from server.client import Client
from server.node.auth import Invites
from server.node.log import id_key

from .conftest import NodeFactory, timeout
from .waiting import eventually, same_end


async def test_a_hand_raised_on_node_a_appears_on_node_b(
    start_node: NodeFactory, redis_url: str, invites: Invites
) -> None:
    a = await start_node(redis_url, name="A")
    b = await start_node(redis_url, name="B")
    chair = await Client.connect(
        b.url, invites.mint(room="plenary", role="moderator", name="Chair")
    )
    ana = await Client.connect(a.url, invites.mint(room="plenary", role="participant", name="Ana"))
    await ana.command("hand.raise")
    await chair.wait_for(lambda s: s["core"]["hands"] == [ana.me], timeout(5))
    await chair.command("floor.grant", {"pid": ana.me})
    await ana.wait_for(lambda s: s["core"]["speakers"] == [ana.me], timeout(5))
    await ana.close()
    await chair.close()


async def test_reconnecting_to_the_other_node_resumes_without_gaps_or_repeats(
    start_node: NodeFactory, redis_url: str, invites: Invites
) -> None:
    a = await start_node(redis_url, name="A")
    b = await start_node(redis_url, name="B")
    chair = await Client.connect(
        a.url, invites.mint(room="plenary", role="moderator", name="Chair")
    )
    ana = await Client.connect(a.url, invites.mint(room="plenary", role="participant", name="Ana"))
    await chair.command("notice.post", {"text": "before"})
    await ana.wait_for(lambda s: (s["core"]["notice"] or {}).get("text") == "before")
    await ana.ws.close()
    for i in range(20):
        await chair.command("notice.post", {"text": f"missed {i}"})
    # Node B may be a little behind A: resume still gives exactly what was missed.
    seen = len(ana.received)
    ana.url = b.url
    await ana.resume()
    await ana.wait_for(lambda s: s["core"]["notice"]["text"] == "missed 19", timeout(5))
    texts = [
        e["text"]
        for m in ana.received[seen:]
        if m["type"] == "events"
        for e in m["events"]
        if e["type"] == "notice"
    ]
    assert texts == [f"missed {i}" for i in range(20)]
    ids = [m["id"] for m in ana.received[seen:] if m["type"] == "events"]
    assert ids == sorted(ids, key=id_key) and len(ids) == len(set(ids))
    await ana.close()
    await chair.close()


async def test_replicas_end_identical_after_a_concurrent_burst(
    start_node: NodeFactory, redis_url: str, invites: Invites
) -> None:
    a = await start_node(
        redis_url, name="A", settings={"command_rate": 1000, "command_burst": 1000}
    )
    b = await start_node(
        redis_url, name="B", settings={"command_rate": 1000, "command_burst": 1000}
    )
    chairs = [
        await Client.connect(
            n.url, invites.mint(room="plenary", role="moderator", name=f"Chair {n.node.name}")
        )
        for n in (a, b)
    ]
    people = [
        await Client.connect(
            (a, b)[i % 2].url, invites.mint(room="plenary", role="participant", name=f"P{i}")
        )
        for i in range(10)
    ]
    rng = random.Random(7)

    async def churn(c: Client) -> None:
        for _ in range(15):
            await c.request(rng.choice(["hand.raise", "hand.lower", "floor.revoke"]))

    async def chairing(c: Client) -> None:
        for _ in range(20):
            pid = rng.choice(people).me
            await c.request(rng.choice(["floor.grant", "floor.revoke", "hand.lower"]), {"pid": pid})

    await asyncio.gather(*(churn(p) for p in people), *(chairing(c) for c in chairs))
    # Both nodes fold the same log: wait until both reached its end, then compare.
    hub_a, hub_b = a.node.hubs["plenary"], b.node.hubs["plenary"]
    await same_end(hub_a, hub_b)
    assert fold.digest(hub_a.state) == fold.digest(hub_b.state)
    core = hub_a.state["core"]
    assert len(core["hands"]) == len(set(core["hands"]))
    # Every client's copy (snapshot + events) equals the server's view.
    for c in people + chairs:
        await c.wait_for(lambda s: s["core"] == hub_a.state["core"], timeout(5))
    for c in people + chairs:
        await c.close()


async def test_a_new_node_catches_up_from_a_snapshot(
    start_node: NodeFactory, redis_url: str, invites: Invites, monkeypatch: object
) -> None:
    from server.node import snapshots

    monkeypatch.setattr(snapshots, "EVERY", 10)  # type: ignore[attr-defined]
    a = await start_node(
        redis_url, name="A", settings={"command_rate": 1000, "command_burst": 1000}
    )
    chair = await Client.connect(
        a.url, invites.mint(room="plenary", role="moderator", name="Chair")
    )
    for i in range(25):
        await chair.command("notice.post", {"text": f"n{i}"})
    b = await start_node(redis_url, name="B")
    hub_a, hub_b = a.node.hubs["plenary"], b.node.hubs["plenary"]
    assert hub_b.recent_base is not None, "node B did not start from a snapshot"
    await same_end(hub_a, hub_b)
    assert fold.digest(hub_a.state) == fold.digest(hub_b.state)
    await chair.close()


async def test_a_redis_restart_loses_no_acknowledged_command(
    start_node: NodeFactory, redis_server: object, redis_url: str, invites: Invites
) -> None:
    """AOF on (the fixture's redis-server): the node reconnects and keeps folding."""
    a = await start_node(redis_url, name="A")
    chair = await Client.connect(
        a.url, invites.mint(room="plenary", role="moderator", name="Chair")
    )
    await chair.command("notice.post", {"text": "before restart"})
    redis_server.restart()  # type: ignore[attr-defined]

    async def post() -> dict[str, Any]:  # refused as unavailable while Redis comes back
        reply = await chair.request("notice.post", {"text": "after restart"}, cid="after-restart")
        assert reply["ok"] or reply["code"] == "unavailable", reply
        return reply

    await eventually(
        post,
        until=lambda reply: reply["ok"],
        timeout=15,
        interval=0.2,
        message="the node to take commands again after the Redis restart",
    )
    b = await start_node(redis_url, name="B")  # a fresh node reads the whole log back
    texts = [
        e["text"]
        for _, events in b.node.hubs["plenary"].recent
        for e in events
        if e["type"] == "notice"
    ]
    assert texts == ["before restart", "after restart"]
    await chair.close()


async def test_a_crashed_nodes_people_go_offline(
    start_node: NodeFactory, redis_url: str, invites: Invites, monkeypatch: object
) -> None:
    """Node B is killed (SIGKILL, no goodbye): node A retires B's connections."""
    import os
    import signal
    import subprocess
    import sys

    import server.node.app as app_module

    from .conftest import SECRET, free_port

    monkeypatch.setattr(app_module, "HEARTBEAT_EVERY", 0.2)  # type: ignore[attr-defined]
    a = await start_node(redis_url, name="A")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--backend", redis_url],
        env={**os.environ, "HEMICYCLE_SECRET": SECRET, "HEMICYCLE_NODE": "B"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        token = invites.mint(room="plenary", role="participant", name="Sokha")
        sokha = await eventually(
            lambda: connect_when_up(url, token),
            timeout=20,
            interval=0.1,
            message=f"node B to accept connections at {url}",
        )
        hub = a.node.hubs["plenary"]
        await eventually(
            lambda: hub.state["core"]["people"].get(sokha.me, {}).get("conns"),
            message="node A to see Sokha online through node B",
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # B's heartbeat lives 6 s; A notices within a beat after that.
        await eventually(
            lambda: hub.state["core"]["people"][sokha.me]["conns"],
            until=lambda conns: not conns,
            timeout=app_module.HEARTBEAT_TTL + 5,
            interval=0.05,
            message="node A to retire the connections of the crashed node B",
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def test_a_leave_during_a_redis_outage_is_recorded_when_redis_returns(
    start_node: NodeFactory, redis_server: object, redis_url: str, invites: Invites
) -> None:
    a = await start_node(redis_url, name="A")
    hub = a.node.hubs["plenary"]
    ana = await Client.connect(a.url, invites.mint(room="plenary", role="participant", name="Ana"))
    await eventually(
        lambda: hub.state["core"]["people"].get(ana.me, {}).get("conns"),
        message="Ana to be online",
    )
    redis_server.stop()  # type: ignore[attr-defined]
    await ana.close()  # its leave cannot be appended now …
    await eventually(
        lambda: hub._retries,
        timeout=10,
        message="the node to try Ana's leave, fail, and keep retrying",
    )
    assert hub.state["core"]["people"][ana.me]["conns"], "left while Redis was down?"
    redis_server.start()  # type: ignore[attr-defined]
    await eventually(  # … and is, once Redis is back
        lambda: hub.state["core"]["people"][ana.me]["conns"],
        until=lambda conns: not conns,
        timeout=15,
        interval=0.05,
        message="Ana's leave to be recorded once Redis is back",
    )


async def connect_when_up(url: str, token: str) -> Client | None:
    try:
        return await Client.connect(url, token)
    except OSError:  # not listening yet
        return None
