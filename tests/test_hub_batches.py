"""The hub's broadcast of entries folded in one pass over the log (RoomHub.flush)."""

from __future__ import annotations

import asyncio
import random

from server.client import Client
from server.node.auth import Invites
from server.node.log import id_key
from server.types import MODERATOR, Actor

from .conftest import NodeFactory, timeout


def notices(client: Client, since: int = 0) -> list[str]:
    return [
        e["text"]
        for m in client.received[since:]
        if m["type"] == "events"
        for e in m["events"]
        if e["type"] == "notice"
    ]


async def test_entries_folded_in_one_pass_reach_a_connection_as_one_frame_in_log_order(
    start_node: NodeFactory, invites: Invites
) -> None:
    node = await start_node()
    hub = node.node.hubs["plenary"]
    ana = await Client.connect(
        node.url, invites.mint(room="plenary", role="participant", name="Ana")
    )
    await ana.wait_for(lambda s: ana.me in s["core"]["people"])
    before = len(ana.received)
    chair = Actor("chair", MODERATOR, "c1")
    texts = [f"burst {i}" for i in range(20)]
    # All twenty are appended before the hub's tail runs again: one pass folds them all.
    await asyncio.gather(
        *(hub.submit(chair, "notice.post", {"text": t}, f"burst-{i}") for i, t in enumerate(texts))
    )
    await ana.wait_for(lambda s: s["core"]["notice"]["text"] == texts[-1], timeout(5))
    frames = [m for m in ana.received[before:] if m["type"] == "events"]
    assert notices(ana, before) == texts
    assert len(frames) == 1, f"{len(frames)} frames for one pass over the log"
    assert frames[0]["id"] == hub.state["meta"]["last"]
    await ana.close()


async def test_people_joining_during_bursts_get_each_event_once_and_in_order(
    start_node: NodeFactory, invites: Invites
) -> None:
    """A connection welcomed between a pass's fold and its broadcast has those entries in
    its snapshot already: it must not get them again, and must miss nothing after."""
    node = await start_node()
    hub = node.node.hubs["plenary"]
    chair = Actor("chair", MODERATOR, "c1")
    texts = [f"notice {i}" for i in range(300)]
    rng = random.Random(7)

    async def post() -> None:
        for start in range(0, len(texts), 10):
            await asyncio.gather(
                *(
                    hub.submit(chair, "notice.post", {"text": texts[i]}, f"n-{i}")
                    for i in range(start, start + 10)
                )
            )
            await asyncio.sleep(rng.random() * 0.004)  # not synchronisation: irregular load

    async def join(i: int) -> Client:
        await asyncio.sleep(rng.random() * 0.3)  # not synchronisation: joins amid the posts
        return await Client.connect(
            node.url, invites.mint(room="plenary", role="participant", name=f"P{i}")
        )

    poster = asyncio.create_task(post())
    clients = await asyncio.gather(*(join(i) for i in range(30)))
    await poster
    log = [
        (entry_id, e["text"])
        for entry_id, events in hub.recent
        for e in events
        if e["type"] == "notice"
    ]
    assert [text for _, text in log] == texts
    for c in clients:
        await c.wait_for(lambda s: s["core"]["notice"]["text"] == texts[-1], timeout(10))
        got = notices(c)
        assert len(got) == len(set(got)), f"{c.you['name']} got a notice twice"
        after = id_key(c.welcome["last"])  # what its welcome snapshot held
        assert got == [text for i, text in log if id_key(i) > after], (
            f"{c.you['name']}: a gap, a repeat or disorder after its welcome"
        )
        ids = [m["id"] for m in c.received if m["type"] == "events"]
        assert all(id_key(a) < id_key(b) for a, b in zip(ids, ids[1:], strict=False))
        assert ids and id_key(ids[0]) > after
    for c in clients:
        await c.close()
