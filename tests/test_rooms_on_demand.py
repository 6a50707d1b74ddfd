"""Rooms opened on first use (``Settings.on_demand``, issue 13).

A node of a 20-room assembly on a real redis-server opens only the rooms someone uses, a
second node opens a room on its first join and holds its whole history, and a room nobody
uses any more is closed and opens again with everything it had.
"""

from __future__ import annotations

import asyncio

import httpx

from server.client import Client
from server.node.auth import Invites
from server.node.config import Assembly, Settings

from .conftest import NodeFactory, timeout
from .test_many_rooms import twenty_rooms
from .waiting import eventually

LAZY = {"on_demand": True, "room_idle": 3600.0}  # closing is driven by the test (close_idle)


def test_on_demand_is_read_from_the_environment() -> None:
    assert Settings.from_env({}).on_demand is False
    s = Settings.from_env({"HEMICYCLE_ON_DEMAND": "yes", "HEMICYCLE_ROOM_IDLE": "30"})
    assert (s.on_demand, s.room_idle) == (True, 30.0)


async def test_a_node_opens_only_the_rooms_used_and_a_second_node_sees_the_history(
    start_node: NodeFactory, redis_url: str, assembly: Assembly, invites: Invites
) -> None:
    big = twenty_rooms(assembly)
    a = await start_node(redis_url, config=big, name="lazy-a", settings=LAZY)
    b = await start_node(redis_url, config=big, name="lazy-b", settings=LAZY)
    assert a.node.hubs == {} and b.node.hubs == {}, "nothing is open before it is used"
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{a.url}/healthz")).json()["rooms"] == {}
        assert (await http.get(f"{a.url}/r/b07")).status_code == 200  # served, not opened
        assert (await http.get(f"{a.url}/r/b99")).status_code == 404
    assert a.node.hubs == {}

    ana = await Client.connect(a.url, invites.mint(room="b07", role="participant", name="Ana"))
    chair = await Client.connect(a.url, invites.mint(room="b12", role="moderator", name="Chair"))
    assert sorted(a.node.hubs) == ["b07", "b12"], "the two rooms used, of twenty"
    await ana.command("hand.raise")
    await chair.command("hand.raise")

    # node b opens b07 on its first join there: its welcome holds all b07's history
    ben = await Client.connect(b.url, invites.mint(room="b07", role="participant", name="Ben"))
    assert sorted(b.node.hubs) == ["b07"]
    assert ana.me in ben.state["core"]["hands"]
    assert ana.me in ben.state["core"]["people"]
    assert a.node.hubs["b07"].state["core"]["people"].keys() == (
        b.node.hubs["b07"].state["core"]["people"].keys()
    )
    # and it folds what comes after, from either node
    await ben.command("hand.raise")
    await ana.wait_for(lambda s: ben.me in s["core"]["hands"], timeout(5))
    async with httpx.AsyncClient() as http:
        assert sorted((await http.get(f"{b.url}/healthz")).json()["rooms"]) == ["b07"]
    for c in (ana, chair, ben):
        await c.close()


async def test_an_unused_room_closes_and_opens_again_with_its_state(
    start_node: NodeFactory, redis_url: str, assembly: Assembly, invites: Invites
) -> None:
    big = twenty_rooms(assembly)
    a = await start_node(redis_url, config=big, name="lazy-c", settings=LAZY)
    node = a.node
    ana = await Client.connect(a.url, invites.mint(room="b03", role="participant", name="Ana"))
    await ana.command("hand.raise")
    assert await node.close_idle(now=1e12) == [], "a room with a connection stays open"
    await ana.close()
    hub = node.hubs["b03"]
    await eventually(
        lambda: (
            not hub.sinks and not hub.pending and not hub.state["core"]["people"][ana.me]["conns"]
        ),
        message="Ana's leave is folded",
        timeout=timeout(5),
    )
    loop_now = asyncio.get_running_loop().time()
    assert await node.close_idle(now=loop_now) == [], "not idle for room_idle yet"
    assert await node.close_idle(now=loop_now + 2 * 3600) == ["b03"]
    assert node.hubs == {}
    assert hub.closing

    # opened again by the next join, with what it had (the hand Ana left raised)
    bo = await Client.connect(a.url, invites.mint(room="b03", role="participant", name="Bo"))
    assert list(node.hubs) == ["b03"] and node.hubs["b03"] is not hub
    assert ana.me in bo.state["core"]["hands"]
    await bo.close()
