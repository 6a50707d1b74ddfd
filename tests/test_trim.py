"""The room's Redis stream trimmed behind the snapshots, vote entries and caption lines kept
in the archive, transcripts whole, a new node catching up from the trimmed log."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from server import fold
from server.client import Client
from server.node import snapshots
from server.node.auth import Invites
from server.node.log import archive_key, log_key
from server.protocol import unpack

from .conftest import NodeFactory, RedisServer, timeout
from .polls_helpers import QUICK

ROOM = "plenary"


async def test_the_log_is_trimmed_and_what_matters_is_archived(
    start_node: NodeFactory,
    invites: Invites,
    redis_server: RedisServer,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(snapshots, "EVERY", 10)
    monkeypatch.setattr(snapshots, "KEEP", 2)
    fast = {"command_rate": 1000, "command_burst": 1000}
    a = await start_node(redis_url, name="A", settings=fast)
    chair_token = invites.mint(room=ROOM, role="moderator", name="Chair")
    chair = await Client.connect(a.url, chair_token)
    cap = await Client.connect(a.url, invites.mint(room=ROOM, role="captioner", name="Cap"))
    r = aioredis.Redis.from_url(redis_url)
    try:
        definition = {k: v for k, v in QUICK.items() if k != "id"}
        assert (await chair.command("poll.create", {"def": definition}))["ok"]
        said = []
        for i in range(40):
            text = f"line {i}"
            await cap.command("caption.post", {"lang": "original", "text": text})
            said.append(text)
            for j in range(3):
                await chair.command("notice.post", {"text": f"notice {i}.{j}"})
            await asyncio.sleep(0.26)  # captions: at most 4 a second
        hub = a.node.hubs[ROOM]
        async with asyncio.timeout(timeout(10)):
            while hub.snapshots.trimmed is None:
                await asyncio.sleep(0.05)
        length = await r.xlen(log_key(ROOM))
        entries_seen = len(hub.recent)
        assert length < entries_seen, (length, entries_seen)
        # Everything before the trim point is gone; at least KEEP × EVERY entries are left
        # behind the latest snapshot.
        first = (await r.xrange(log_key(ROOM), count=1))[0][0].decode()
        assert first == hub.snapshots.trimmed
        assert length >= snapshots.KEEP * snapshots.EVERY
        # The archive holds the vote entries (poll.create, poll.keys) and the caption lines.
        archive = [unpack(f[b"e"]) for _, f in await r.xrange(archive_key(ROOM))]
        cmds = {unpack(x["entry"])["cmd"] for x in archive if "entry" in x}
        assert "poll.create" in cmds, cmds
        lines = [c["text"] for x in archive for c in x.get("captions", [])]
        assert lines and lines == said[: len(lines)]
        # The transcript is whole: archive up to the snapshot, the log after it.
        async with httpx.AsyncClient(base_url=a.url) as http:
            got = await http.get(
                f"/api/transcripts/{ROOM}/original",
                params={"format": "txt"},
                headers={"Authorization": "Bearer " + chair_token},
            )
        assert got.status_code == 200
        assert [line.split("  ", 1)[1] for line in got.text.splitlines()] == said
        # A node started now loads the snapshot and folds the trimmed log to the same state.
        b = await start_node(redis_url, name="B")
        hub_b = b.node.hubs[ROOM]
        async with asyncio.timeout(timeout(10)):
            while hub_b.state["meta"]["last"] != hub.state["meta"]["last"]:
                await asyncio.sleep(0.05)
        assert fold.digest(hub_b.state) == fold.digest(hub.state)
        late = await Client.connect(b.url, invites.mint(room=ROOM, role="participant", name="L"))
        notices: Any = late.state["core"]["notice"]
        assert notices["text"] == "notice 39.2"
        await late.close()
    finally:
        await chair.close()
        await cap.close()
        await r.aclose()


async def test_the_memory_log_trims_and_archives_like_redis() -> None:
    from server.node.log import MemoryLog

    store = MemoryLog()
    for i in range(10):
        assert await store.append("r", bytes([i])) == f"{i + 1}-0"
    await store.trim("r", "5-0")
    assert await store.append("r", b"x") == "11-0"

    async def read(after: str | None) -> list[str]:
        out = []
        async for entry_id, _ in store.tail("r", after):
            out.append(entry_id)
            if entry_id == "11-0":
                return out
        return out

    assert await read(None) == [f"{i}-0" for i in range(5, 12)]
    assert await read("2-0") == [f"{i}-0" for i in range(5, 12)]
    assert await read("7-0") == ["8-0", "9-0", "10-0", "11-0"]
    await store.archive("r", [("3-0", b"a"), ("6-0", b"b")])
    await store.archive("r", [("6-0", b"again"), ("8-0", b"c")])  # another node's copy
    assert await store.read_archive("r") == [("3-0", b"a"), ("6-0", b"b"), ("8-0", b"c")]
