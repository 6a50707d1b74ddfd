"""Nodes on a real Redis Cluster (three masters, three replicas): the room flow across two
nodes, sharded pub/sub, and a master killed in the middle of a vote."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server import fold
from server.client import Client
from server.node.auth import Invites
from server.node.cluster import parse_url
from server.node.log import log_key
from server.voter import SecretBallot, claim, frame

from .conftest import NodeFactory, timeout
from .redis_cluster import RedisCluster, cluster_port
from .test_polls_nodes import OPEN_VOTE, SECRET_VOTE, connect, make_assembly, open_poll, wait_poll
from .waiting import eventually

# Known, its source not yet found: a redis-py connection of an earlier test is sometimes
# left unclosed, and this file's gc.collect() (below) is what collects it ("loop is closed").
# One source was found and closed (the command parser left on a node a slot refresh had
# dropped: test_the_command_parser_never_stays_on_a_node_the_slot_table_dropped). The CI run
# of 2026-11-30 10:18 showed the other one: not a cluster client but a standalone
# redis.asyncio Connection to a single Redis, suspended in a read when its loop closed. It
# was not seen in a run of the 36 Redis-marked tests with a gc.collect() after each, so it
# comes from elsewhere, or from a race. What is checked here (the room flow, no acknowledged
# ballot lost, the failover) does not depend on it, so it is reported in the warnings
# summary ("default", not "error") rather than turned into a failure.
pytestmark = [
    pytest.mark.redis,
    pytest.mark.filterwarnings("default::pytest.PytestUnraisableExceptionWarning"),
]
ROOT = Path(__file__).resolve().parent.parent


def test_cluster_urls_are_parsed_and_bad_ones_named() -> None:
    nodes, options = parse_url("redis+cluster://a:7000,[::1]:7001?wait=1&wait_ms=250")
    assert nodes == [("a", 7000), ("::1", 7001)]
    assert options == {"wait": 1, "wait_ms": 250}
    _, options = parse_url("redis+cluster://hc:s%40cret@a:7000")
    assert options == {"wait": 0, "wait_ms": 1000, "username": "hc", "password": "s@cret"}
    for bad, says in [
        ("redis+cluster://a", "start node 'a' is not host:port"),
        ("redis+cluster://a:1,b:x", "start node 'b:x' is not host:port"),
        ("redis+cluster://a:1?wait=yes", "wait must be a whole number"),
        ("redis+cluster://a:1?replicas=1", "unknown option"),
    ]:
        with pytest.raises(ValueError, match=says):
            parse_url(bad)


async def test_the_room_flow_across_two_nodes_on_a_cluster(
    start_node: NodeFactory, cluster_url: str, invites: Invites
) -> None:
    a = await start_node(cluster_url, name="A")
    b = await start_node(cluster_url, name="B")
    chair = await Client.connect(
        b.url, invites.mint(room="plenary", role="moderator", name="Chair")
    )
    ana = await Client.connect(a.url, invites.mint(room="plenary", role="participant", name="Ana"))
    await ana.command("hand.raise")
    await chair.wait_for(lambda s: s["core"]["hands"] == [ana.me], timeout(5))
    await chair.command("floor.grant", {"pid": ana.me})
    await ana.wait_for(lambda s: s["core"]["speakers"] == [ana.me], timeout(5))
    # Ephemeral traffic crosses nodes over sharded pub/sub.
    await ana.send({"type": "react", "emoji": "👏"})
    await chair.wait_message(
        lambda m: m.get("kind") == "reaction" and m["pid"] == ana.me, timeout(5)
    )
    # Other rooms live on other shards; each node folds them all the same.
    assert len({a.node.backends.redis.keyslot(log_key(r)) for r in a.node.hubs}) > 1

    def digests(node: Any) -> dict[str, str]:
        return {r: fold.digest(h.state) for r, h in node.node.hubs.items()}

    await eventually(
        lambda: digests(a) == digests(b), message="both nodes to fold every room alike"
    )
    await ana.close()
    await chair.close()


@pytest.fixture
def own_cluster() -> Iterator[RedisCluster]:
    """A cluster of this test's own (it kills a master), run with the shipped node config."""
    with tempfile.TemporaryDirectory(prefix="hc-cluster-") as tmp:
        ports = [cluster_port() for _ in range(6)]
        cluster = RedisCluster(
            Path(tmp), ports, config=str(ROOT / "config/redis-cluster-node.conf")
        )
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()


async def cast_until_acknowledged(rep: Client, i: int, out: dict[str, list[str]]) -> None:
    """One member's open ballot and sealed ballot, each sent again (same id) until taken."""
    cid = rep.next_cid()
    for _ in range(400):
        with contextlib.suppress(TimeoutError, ConnectionError):
            reply = await rep.request(
                "ballot.cast", {"poll": "open-vote", "choice": "yes"}, cid=cid
            )
            if reply["ok"]:
                out["open"].append(f"m{i}")
                break
            assert reply["code"] == "unavailable", reply
            out["unavailable"].append(reply["message"])
        await asyncio.sleep(0.05)  # not synchronisation: a client's pause before a retry
    ballot = SecretBallot.new(rep.state, "plenary", "vote", f"m{i}")
    for _ in range(400):
        reply = await claim(rep, ballot)
        if reply["ok"]:
            break
        assert reply["code"] == "unavailable", reply
        out["unavailable"].append(reply["message"])
        await asyncio.sleep(0.05)  # not synchronisation: a client's pause before a retry
    sealed = ballot.sealed(["no"])  # kept and re-sent as is: counted once
    for _ in range(400):
        with contextlib.suppress(TimeoutError, ConnectionError):
            reply = await frame(rep, "deposit", sealed, timeout=timeout(20))
            if reply["ok"]:
                out["secret"].append(reply["tracker"])
                break
            assert reply["code"] == "unavailable", reply
            out["unavailable"].append(reply["message"])
        await asyncio.sleep(0.05)  # not synchronisation: a client's pause before a retry


@pytest.mark.timeout(300)  # a cluster of its own, a failover and a recovery: ~50 s alone
async def test_a_master_killed_mid_vote_loses_no_acknowledged_ballot(
    own_cluster: RedisCluster, start_node: NodeFactory, invites: Invites
) -> None:
    """SIGKILL the master that holds the plenary while ballots come in: its replica takes
    over, the nodes follow it (log, bus), and every acknowledged ballot is counted once —
    appends wait for a replica (``wait=1``), so none lived only on the dead master."""
    voters = 24
    assembly = make_assembly(voters, [OPEN_VOTE, SECRET_VOTE])
    url = own_cluster.url
    a = await start_node(url, config=assembly, name="A")
    b = await start_node(url, config=assembly, name="B")
    chair = await connect(a.url, invites, "moderator")
    reps = [await connect((a, b)[i % 2].url, invites, org=f"m{i}") for i in range(voters)]
    await open_poll(chair, "open-vote")
    await open_poll(chair, "vote")
    for r in reps:
        await wait_poll(r, "vote", lambda p: p["state"] == "open")
    acked: dict[str, list[str]] = {"open": [], "secret": [], "unavailable": []}
    victim = own_cluster.master_of(log_key("plenary"))
    assert victim is not None
    # The client asks one node (its command parser's) for the keys of XREAD; make it the
    # victim on node A, the case that leaked a connection when it happened by chance (one
    # run in three): server/node/cluster.py refresh_slots.
    client_a = a.node.backends.redis
    client_a.commands_parser.node = client_a.nodes_manager.nodes_cache[f"127.0.0.1:{victim}"]

    def crash_and_recover() -> None:
        own_cluster.kill(victim)
        deadline = time.monotonic() + timeout(30)
        while own_cluster.master_of(log_key("plenary")) in (victim, None):  # the election
            assert time.monotonic() < deadline, "no replica took over the killed master"
            time.sleep(0.1)
        # The dead master comes back (its AOF, its nodes.conf) as the new master's replica:
        # until then an append reaches no replica and is refused, as it should be.
        own_cluster.start_node(victim)
        own_cluster.wait_healthy(timeout(30))

    async def voting() -> None:
        for i, rep in enumerate(reps):
            await asyncio.sleep(0.02)  # not synchronisation: spread the ballots over time
            tasks.append(asyncio.create_task(cast_until_acknowledged(rep, i, acked)))

    tasks: list[asyncio.Task[None]] = []
    starting = asyncio.create_task(voting())
    await eventually(lambda: acked["open"], message="a first acknowledged ballot before the kill")
    await asyncio.to_thread(crash_and_recover)
    await starting
    await asyncio.wait_for(asyncio.gather(*tasks), timeout(90))
    assert len(acked["open"]) == voters and len(acked["secret"]) == voters
    assert acked["unavailable"], "no command met the failover: the test did not test it"
    assert own_cluster.master_of(log_key("plenary")) != victim
    # Ephemeral traffic follows the slot to its new master.
    await reps[0].send({"type": "react", "emoji": "🎉"})
    await reps[1].wait_message(
        lambda m: m.get("kind") == "reaction" and m["emoji"] == "🎉", timeout(15)
    )
    await chair.command("poll.close", {"poll": "open-vote"})
    await chair.command("poll.close", {"poll": "vote"})
    await wait_poll(chair, "vote", lambda p: p["sealed"], 20)
    await wait_poll(chair, "open-vote", lambda p: p["sealed"])
    polls = a.node.hubs["plenary"].state["polls"]["polls"]
    assert sorted(polls["open-vote"]["voted"]) == sorted(acked["open"])
    result = polls["vote"]["result"]
    assert set(result["trackers"]) == set(acked["secret"]) and result["counted"] == voters
    assert {o["id"]: o["n"] for o in result["options"]} == {"yes": 0, "no": voters, "abstain": 0}
    # A node started now, from the cluster alone, folds the same polls.
    c = await start_node(url, config=assembly, name="C")
    assert fold.digest(c.node.hubs["plenary"].state["polls"]) == fold.digest(
        a.node.hubs["plenary"].state["polls"]
    )
    for client in (chair, *reps):
        await client.close()
    asked = client_a.commands_parser.node
    assert client_a.nodes_manager.nodes_cache.get(asked.name) is asked, "parser on a dropped node"
    for node in (a, b, c):
        await node.stop()
    left_open = open_redis_connections(own_cluster.ports)
    assert not left_open, f"the stopped nodes left Redis connections open: {left_open}"


def open_redis_connections(ports: list[int]) -> list[str]:
    """redis-py asyncio connections of this process to ``ports`` still connected."""
    from redis.asyncio.connection import AbstractConnection

    gc.collect()
    return [
        f"{o.host}:{o.port}"  # type: ignore[attr-defined]
        for o in gc.get_objects()
        if isinstance(o, AbstractConnection)
        and o.is_connected
        and getattr(o, "port", None) in ports
    ]


async def test_the_command_parser_never_stays_on_a_node_the_slot_table_dropped(
    cluster_url: str,
) -> None:
    """The leak the cluster tests once ignored: redis-py's cluster client asks its command
    parser's node for the keys of XREAD (``COMMAND GETKEYS``); a slot refresh that dropped
    that node (a killed master) left the parser asking it, on connections no ``aclose()``
    reached. Here the parser is put on a node object outside the table, connected."""
    from redis.asyncio.cluster import ClusterNode

    from server.node.backends import open_backends
    from server.node.cluster import refresh_slots

    for closing in (False, True):
        backends = open_backends(cluster_url)
        client = backends.redis
        try:
            await backends.log.append("plenary", b"x")  # initialises the client
            some = next(iter(client.nodes_manager.nodes_cache.values()))
            dropped = ClusterNode(some.host, some.port)  # type: ignore[no-untyped-call]
            assert await dropped.execute_command("PING")
            client.commands_parser.node = dropped
            assert [c for c in dropped._connections if c.is_connected]
            if not closing:
                await refresh_slots(client)  # what the log and the bus do after a failover
                parser = client.commands_parser.node
                assert client.nodes_manager.nodes_cache.get(parser.name) is parser
                assert await client.xread({log_key("plenary"): "0-0"})  # routed by GETKEYS
        finally:
            await backends.close()
        assert not [c for c in dropped._connections if c.is_connected], (
            "a dropped node's connection is left open"
        )
