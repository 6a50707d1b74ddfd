"""Snapshots made off the event loop (server/node/snapshots.py): the saved state is the one
the live replica had at that entry; a save that meets a Redis outage is logged and retried."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from server import fold
from server.node.backends import open_backends
from server.node.config import Assembly
from server.node.snapshots import Snapshots
from server.protocol import pack, unpack
from server.types import SYSTEM

from .conftest import RedisServer, timeout


def entries(n: int) -> list[dict[str, Any]]:
    """A join, then notices: commands the fold accepts, as a node would append them."""
    out: list[dict[str, Any]] = [
        {
            "cid": "join:c1",
            "actor": {"pid": "node", "role": SYSTEM, "conn": None},
            "cmd": "join",
            "args": {"pid": "chair", "name": "Chair", "role": "moderator", "conn": "n~c1"},
            "ts": 1_000,
        }
    ]
    for i in range(1, n):
        out.append(
            {
                "cid": f"chair:{i}",
                "actor": {"pid": "chair", "role": "moderator", "conn": "n~c1"},
                "cmd": "notice.post",
                "args": {"text": f"notice {i}"},
                "ts": 1_000 + i,
            }
        )
    return out


async def wait_saved(snaps: Snapshots, at: str, seconds: float = 10) -> None:
    async with asyncio.timeout(timeout(seconds)):
        while snaps.saved != at:
            await asyncio.sleep(0.01)


async def test_a_snapshot_holds_the_state_at_its_entry_while_the_live_replica_moves_on(
    assembly: Assembly,
) -> None:
    room = assembly.rooms["plenary"]
    backends = open_backends("memory://")
    live = fold.new_state(room)
    snaps = Snapshots("plenary", backends.log, fold.RULES, fold.new_state(room), every=50)
    digests: dict[str, str] = {}
    for i, entry in enumerate(entries(120)):
        entry_id = f"{i + 1}-0"
        fold.fold(live, entry_id, entry)
        snaps.add(entry_id, pack(entry))
        digests[entry_id] = fold.digest(live)
    async with asyncio.timeout(timeout(10)):
        while snaps._task is not None and not snaps._task.done():
            await asyncio.sleep(0.01)
    saved = await backends.log.load_snapshot("plenary")
    assert saved is not None
    at, data = saved
    # A save fell due at entry 100; it covers every entry handed over by then.
    assert int(at.split("-")[0]) >= 100
    assert fold.digest(unpack(data)) == digests[at]
    assert fold.digest(live) == digests["120-0"]  # the live replica was never touched
    await snaps.close()
    await backends.close()


async def test_a_save_during_a_redis_outage_is_logged_and_retried_until_it_lands(
    assembly: Assembly, redis_server: RedisServer, redis_url: str, caplog: Any
) -> None:
    room = assembly.rooms["plenary"]
    backends = open_backends(redis_url)
    snaps = Snapshots("plenary", backends.log, fold.RULES, fold.new_state(room), every=20)
    redis_server.stop()
    caplog.set_level(logging.WARNING, logger="server.node.snapshots")
    try:
        for i, entry in enumerate(entries(20)):
            snaps.add(f"{i + 1}-0", pack(entry))
        async with asyncio.timeout(timeout(10)):
            while "not saved" not in caplog.text:
                await asyncio.sleep(0.02)
        assert snaps.saved is None
    finally:
        redis_server.start()
    await wait_saved(snaps, "20-0", seconds=30)
    saved = await backends.log.load_snapshot("plenary")
    assert saved is not None and saved[0] == "20-0"
    await snaps.close()
    await backends.close()


@pytest.mark.parametrize("every", [1, 7])
async def test_entries_that_arrive_while_a_save_runs_go_into_the_next_one(
    assembly: Assembly, every: int
) -> None:
    room = assembly.rooms["plenary"]
    backends = open_backends("memory://")
    live = fold.new_state(room)
    snaps = Snapshots("plenary", backends.log, fold.RULES, fold.new_state(room), every=every)
    for i, entry in enumerate(entries(70)):
        fold.fold(live, f"{i + 1}-0", entry)
        snaps.add(f"{i + 1}-0", pack(entry))
    # Whatever was saved last is a state the live replica passed through, never a mix.
    async with asyncio.timeout(timeout(10)):
        while snaps._task is not None and not snaps._task.done():
            await asyncio.sleep(0.01)
    saved = await backends.log.load_snapshot("plenary")
    assert saved is not None
    replay = fold.new_state(room)
    n = int(saved[0].split("-")[0])
    for i, entry in enumerate(entries(n)):
        fold.fold(replay, f"{i + 1}-0", entry)
    assert fold.digest(unpack(saved[1])) == fold.digest(replay)
    await snaps.close()
    await backends.close()
