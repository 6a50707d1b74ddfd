"""Group commit (server/node/groupcommit.py): appends made together share one round trip,
each answered with its own id or error, in the order they were made; on a real Redis."""

from __future__ import annotations

import asyncio
import re

import pytest

from server import fold
from server.errors import Unavailable
from server.node.backends import open_backends
from server.node.cluster import ClusterLog
from server.node.config import Assembly
from server.node.groupcommit import GroupCommit
from server.node.hub import RoomHub
from server.node.log import RedisLog, id_key, log_key
from server.node.metrics import Metrics
from server.protocol import decode, encode_map

from .conftest import RedisServer
from .redis_cluster import RedisCluster


class Recorder:
    """A write that records its batches and answers in order (a ``ValueError`` for b"bad")."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, bytes]]] = []
        self.fail_next = False

    async def __call__(self, items: list[tuple[str, bytes]]) -> list[str | Exception]:
        self.batches.append(items)
        await asyncio.sleep(0.01)  # the round trip: appends made meanwhile wait for the next
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("lost")
        n = sum(len(b) for b in self.batches[:-1])
        return [
            ValueError("refused") if e == b"bad" else f"{n + i + 1}-0"
            for i, (_, e) in enumerate(items)
        ]


async def test_appends_of_one_turn_go_in_one_batch_and_get_their_own_ids() -> None:
    write = Recorder()
    group = GroupCommit(write)
    ids = await asyncio.gather(*(group.append("k", f"e{i}".encode()) for i in range(50)))
    assert ids == [f"{i + 1}-0" for i in range(50)]
    assert len(write.batches) == 1
    assert [e for _, e in write.batches[0]] == [f"e{i}".encode() for i in range(50)]
    assert (group.batches, group.entries) == (1, 50)


async def test_appends_made_while_a_batch_is_on_its_way_form_the_next() -> None:
    write = Recorder()
    group = GroupCommit(write, max_batch=8)
    first = asyncio.ensure_future(group.append("k", b"a"))
    await asyncio.sleep(0.001)  # the first batch is out: these queue behind it
    rest = [asyncio.ensure_future(group.append("k", f"b{i}".encode())) for i in range(20)]
    ids = [await first, *[await r for r in rest]]
    assert sorted(ids, key=id_key) == ids and len(set(ids)) == 21
    assert [len(b) for b in write.batches] == [1, 8, 8, 4]  # never more than max_batch


async def test_one_entry_refused_and_a_batch_lost_reach_only_their_callers() -> None:
    write = Recorder()
    group = GroupCommit(write)
    good, bad = group.append("k", b"ok"), group.append("k", b"bad")
    results = await asyncio.gather(good, bad, return_exceptions=True)
    assert results[0] == "1-0" and isinstance(results[1], ValueError)
    write.fail_next = True
    lost = await asyncio.gather(group.append("k", b"x"), return_exceptions=True)
    assert isinstance(lost[0], ConnectionError)
    assert await group.append("k", b"y") == "4-0"  # the next batch goes on


async def test_redis_log_batches_concurrent_appends_of_several_rooms(redis_url: str) -> None:
    backends = open_backends(redis_url)
    try:
        log = backends.log
        assert isinstance(log, RedisLog)
        ids = await asyncio.gather(
            *(log.append(f"room{i % 3}", f"e{i}".encode()) for i in range(300))
        )
        assert len({(i % 3, entry_id) for i, entry_id in enumerate(ids)}) == 300
        assert log.group.entries == 300 and log.group.batches < 10
        for room in range(3):  # each room's stream holds its entries, in the order made
            got: list[bytes] = []
            async for _, data in log.tail(f"room{room}", None):
                got.append(data)
                if len(got) == 100:
                    break
            assert got == [f"e{i}".encode() for i in range(room, 300, 3)]
    finally:
        await backends.close()


async def test_redis_away_answers_every_append_of_the_batch_unavailable(
    redis_server: RedisServer,
) -> None:
    backends = open_backends(redis_server.url)
    try:
        await backends.log.append("r", b"before")
        redis_server.stop()
        try:
            results = await asyncio.gather(
                *(backends.log.append("r", b"x") for _ in range(5)), return_exceptions=True
            )
        finally:
            redis_server.start()
        assert all(isinstance(r, Unavailable) for r in results), results
        assert await backends.log.append("r", b"after")  # and it writes again
    finally:
        await backends.close()


@pytest.mark.parametrize("codec", ["json", "msgpack"])
def test_welcome_info_encoded_decodes_as_welcome_info(codec: str, assembly: Assembly) -> None:
    room = next(iter(assembly.rooms.values()))
    hub = RoomHub(room, open_backends("memory://"), Metrics(), rules=fold.RULES)

    class Speaker:
        name = "speaker"

        def welcome(self, hub: RoomHub) -> dict[str, object]:
            return {"speaker": "p1", "title": "overridden by a feature"}

    hub.attach_feature(Speaker())  # type: ignore[arg-type]
    for _ in range(2):  # the second time from the cached parts
        framed = encode_map(
            [("type", "welcome"), ("assembly", hub.welcome_info_encoded(codec))],  # type: ignore[arg-type]
            codec,  # type: ignore[arg-type]
        )
        got = decode(framed, codec)  # type: ignore[arg-type]
        assert got["assembly"] == hub.welcome_info()
        assert got["assembly"]["title"] == "overridden by a feature"


def _wait_calls(cluster: RedisCluster) -> int:
    """``WAIT`` commands the cluster's masters have run since their last ``CONFIG RESETSTAT``."""
    import redis

    total = 0
    for port in cluster.masters():
        with redis.Redis(port=port) as r:
            total += int(r.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))
    return total


@pytest.mark.redis
async def test_cluster_log_batches_per_master_with_one_wait_each(
    redis_cluster: RedisCluster, cluster_url: str
) -> None:
    """On a real cluster (``wait=1``): 300 appends to rooms on several masters go in a few
    batches, each master's share in one pipeline closed by one WAIT, and each room's stream
    holds its entries in the order they were made."""
    import redis

    rooms = [f"room{i}" for i in range(6)]
    assert len({redis_cluster.master_of(log_key(r)) for r in rooms}) > 1
    for port in redis_cluster.masters():
        with redis.Redis(port=port) as r:
            r.config_resetstat()
    backends = open_backends(cluster_url)
    try:
        log = backends.log
        assert isinstance(log, ClusterLog)
        ids = await asyncio.gather(
            *(log.append(rooms[i % 6], f"e{i}".encode()) for i in range(300))
        )
        assert len({(i % 6, entry_id) for i, entry_id in enumerate(ids)}) == 300
        assert log.group.entries == 300 and log.group.batches < 10
        assert _wait_calls(redis_cluster) <= 3 * log.group.batches  # not one per append
        for n, room in enumerate(rooms):
            got: list[bytes] = []
            async for _, data in log.tail(room, None):
                got.append(data)
                if len(got) == 50:
                    break
            assert got == [f"e{i}".encode() for i in range(n, 300, 6)]
    finally:
        await backends.close()


@pytest.mark.redis
async def test_cluster_log_answers_each_append_unavailable_when_replicas_lag(
    redis_cluster: RedisCluster, cluster_url: str
) -> None:
    """Three replicas asked of masters that have one: WAIT says 1 of 3 and every append of
    the batch is refused ``unavailable`` (the client sends it again; the fold counts it once)."""
    url = cluster_url.replace("wait=1", "wait=3").replace("wait_ms=2000", "wait_ms=50")
    backends = open_backends(url)
    try:
        results = await asyncio.gather(
            *(backends.log.append(f"room{i}", b"x") for i in range(6)), return_exceptions=True
        )
        assert all(isinstance(r, Unavailable) for r in results), results
        assert all(re.search(r"reached [01] of 3 replica\(s\)", str(r)) for r in results), results
    finally:
        await backends.close()
