"""Many rooms over several nodes: each node folds only the rooms it serves (issue 13).

Twenty rooms (the plenary and 19 breakouts), four uvicorn nodes on one real redis-server,
each node started with ``rooms=`` (``HEMICYCLE_ROOMS`` / ``--rooms``): the plenary on every
node, each breakout on one. Clients in several rooms on different nodes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest

from server.client import Client, CommandError
from server.errors import ConfigError
from server.node.auth import Invites
from server.node.config import Assembly, Settings

from .conftest import NodeFactory, RunningNode, timeout
from .waiting import eventually

PLENARY = "plenary"
BREAKOUTS = [f"b{i:02}" for i in range(1, 20)]
NODES = 4


def twenty_rooms(assembly: Assembly) -> Assembly:
    """The demo assembly with 19 breakouts shaped like its plenary."""
    plenary = assembly.rooms[PLENARY]
    rooms = {PLENARY: plenary}
    for rid in BREAKOUTS:
        rooms[rid] = dataclasses.replace(plenary, id=rid, title=f"Breakout {rid}", titles={})
    return dataclasses.replace(assembly, rooms=rooms)


def share(k: int) -> tuple[str, ...]:
    """Node ``k`` serves the plenary and every fourth breakout."""
    return (PLENARY, *BREAKOUTS[k::NODES])


def pids_named(frames: list[dict[str, Any]]) -> set[str]:
    """Every person an ``events`` frame speaks of (``pid`` or a joined ``person``)."""
    out: set[str] = set()
    for frame in frames:
        for event in frame.get("events", ()) if frame["type"] == "events" else ():
            if isinstance(event.get("pid"), str):
                out.add(event["pid"])
            if isinstance(event.get("person"), dict):
                out.add(event["person"]["pid"])
    return out


def test_a_room_the_assembly_lacks_stops_the_start(assembly: Assembly) -> None:
    with pytest.raises(ConfigError, match="HEMICYCLE_ROOMS.*'attic'"):
        Settings(rooms=("plenary", "attic")).served(assembly)
    env = {"HEMICYCLE_ROOMS": " b03, plenary ,,"}
    big = twenty_rooms(assembly)
    assert Settings.from_env(env).served(big) == [PLENARY, "b03"]  # the assembly's order
    assert Settings.from_env({}).served(big) == [PLENARY, *BREAKOUTS]


async def test_twenty_rooms_on_four_nodes_each_folds_only_its_own(
    start_node: NodeFactory, redis_url: str, assembly: Assembly, invites: Invites
) -> None:
    big = twenty_rooms(assembly)
    nodes: list[RunningNode] = [
        await start_node(redis_url, config=big, name=f"n{k}", settings={"rooms": share(k)})
        for k in range(NODES)
    ]
    for k, node in enumerate(nodes):
        assert sorted(node.node.hubs) == sorted(share(k))
        async with httpx.AsyncClient() as http:
            health = (await http.get(f"{node.url}/healthz")).json()
            assert sorted(health["rooms"]) == sorted(share(k))
            other = BREAKOUTS[(k + 1) % NODES]
            assert (await http.get(f"{node.url}/r/{other}")).status_code == 404
            assert (await http.get(f"{node.url}/r/{BREAKOUTS[k]}")).status_code == 200

    def mint(room: str, name: str) -> str:
        return invites.mint(room=room, role="participant", name=name, lang="en")

    # A breakout's token on a node that does not serve it: refused, with the reason.
    with pytest.raises(CommandError, match="served by other nodes") as refused:
        await Client.connect(nodes[0].url, mint(BREAKOUTS[1], "Stray"))
    assert refused.value.code == "unknown_room"

    # Each node: one person in the plenary, one in each of two of its breakouts.
    clients: dict[str, list[Client]] = {}
    try:
        for k, node in enumerate(nodes):
            for room in (PLENARY, *share(k)[1:3]):
                c = await Client.connect(node.url, mint(room, f"{room}-{k}"))
                clients.setdefault(room, []).append(c)
        everyone = [c for cs in clients.values() for c in cs]
        assert len(clients) == 1 + 2 * NODES and len(clients[PLENARY]) == NODES
        for c in everyone:
            await c.command("hand.raise")
        for cs in clients.values():
            mine = {c.me for c in cs}
            for c in cs:  # the plenary's hands cross all four nodes
                await c.wait_for(
                    lambda s, mine=mine: set(s["core"]["hands"]) == mine, timeout=timeout(20)
                )
        # Nothing of another room reached anyone: no event names a person of another room.
        for room, cs in clients.items():
            mine = {c.me for c in cs}
            for c in cs:
                assert pids_named(c.received) <= mine, (room, pids_named(c.received) - mine)
                assert set(c.state["core"]["people"]) == mine, room
        # Each node's replicas: its own rooms only, each holding only that room's people.
        for k, node in enumerate(nodes):
            assert sorted(node.node.hubs) == sorted(share(k))
            for rid, hub in node.node.hubs.items():
                here = {c.me for c in clients.get(rid, [])}
                await eventually(
                    lambda hub=hub: {
                        p for p, rec in hub.state["core"]["people"].items() if rec["conns"]
                    },
                    until=lambda got, here=here: got == here,
                    message=f"node {k} room {rid}: online = its own clients",
                    timeout=timeout(20),
                )
    finally:
        for cs in clients.values():
            for c in cs:
                await c.close()


async def test_a_room_named_in_the_url_must_be_the_invites(
    start_node: NodeFactory, invites: Invites
) -> None:
    """The pages add ``&room=`` to the WebSocket URL so that a proxy can route by room; a
    URL naming another room than the invite's is refused and joins nobody."""
    node = await start_node()
    token = invites.mint(room=PLENARY, role="participant", name="Ana", lang="en")
    with pytest.raises(CommandError, match="not 'attic'") as refused:
        await Client.connect(node.url, token + "&room=attic")
    assert refused.value.code == "wrong_room"
    assert not node.node.hubs[PLENARY].state["core"]["people"]
    async with await Client.connect(node.url, token + f"&room={PLENARY}") as ana:
        await ana.wait_for(lambda s: ana.me in s["core"]["people"], timeout=timeout(10))
