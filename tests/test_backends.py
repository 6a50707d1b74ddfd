"""One contract for every backend: memory://, a real redis-server, a real Redis Cluster."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from server.node.backends import Backends, open_backends
from server.node.log import id_key

from .conftest import RedisServer, timeout
from .waiting import eventually


@pytest.fixture(params=["memory", "redis", "cluster"])
async def backends(request: pytest.FixtureRequest) -> AsyncIterator[Backends]:
    url = "memory://"
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
    elif request.param == "cluster":
        url = request.getfixturevalue("cluster_url")
    b = open_backends(url)
    try:
        yield b
    finally:
        await b.close()


def test_unknown_scheme_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown backend 'kafka://x'"):
        open_backends("kafka://x")


async def take(it: AsyncIterator[tuple[str, bytes]], n: int) -> list[tuple[str, bytes]]:
    out = []
    async with asyncio.timeout(timeout(5)):
        async for item in it:
            out.append(item)
            if len(out) == n:
                break
    return out


async def test_log_keeps_order_and_tails_from_an_id(backends: Backends) -> None:
    ids = [await backends.log.append("r1", f"e{i}".encode()) for i in range(5)]
    assert ids == sorted(ids, key=id_key) and len(set(ids)) == 5
    await backends.log.append("r2", b"other room")
    got = await take(backends.log.tail("r1", None), 5)
    assert [d for _, d in got] == [b"e0", b"e1", b"e2", b"e3", b"e4"]
    assert [i for i, _ in got] == ids
    after = await take(backends.log.tail("r1", ids[2]), 2)
    assert [d for _, d in after] == [b"e3", b"e4"]


async def test_tail_waits_for_new_entries(backends: Backends) -> None:
    first = await backends.log.append("r", b"a")
    tail = backends.log.tail("r", first)
    reader = asyncio.create_task(take(tail, 2))
    await asyncio.sleep(0.05)  # not synchronisation: time for a wrong tail to return early
    assert not reader.done()
    await backends.log.append("r", b"b")
    await backends.log.append("r", b"c")
    assert [d for _, d in await reader] == [b"b", b"c"]


async def test_snapshots_round_trip(backends: Backends) -> None:
    assert await backends.log.load_snapshot("r") is None
    await backends.log.save_snapshot("r", "7-0", b"\x81\xa1a\x01")
    assert await backends.log.load_snapshot("r") == ("7-0", b"\x81\xa1a\x01")


async def test_bus_fans_out_to_subscribers_only(backends: Backends) -> None:
    bus = backends.bus
    async with (
        bus.subscribe("hc:{r}:a") as a1,
        bus.subscribe("hc:{r}:a") as a2,
        bus.subscribe("hc:{r}:b") as b,
    ):
        await bus.publish("hc:{r}:a", b"x")
        await bus.publish("hc:{r}:b", b"y")
        async with asyncio.timeout(timeout(5)):
            assert await anext(a1) == b"x"
            assert await anext(a2) == b"x"
            assert await anext(b) == b"y"
        assert a1.get_nowait() is None


async def test_bus_unsubscribes_when_the_last_subscriber_leaves(backends: Backends) -> None:
    async with backends.bus.subscribe("hc:{r}:gone"):
        pass
    if backends.url.startswith("redis+cluster"):
        cluster = backends.redis
        node = cluster.get_node_from_key("hc:{r}:gone")

        async def gone() -> bool:
            return b"hc:{r}:gone" not in await cluster.pubsub_shardchannels(target_nodes=node)

        await eventually(gone, message="the shard to drop the channel nobody listens to")
    elif backends.redis is not None:
        redis = backends.redis

        async def gone() -> bool:
            return b"hc:{r}:gone" not in await redis.pubsub_channels()

        await eventually(gone, message="Redis to drop the channel nobody listens to")
    await backends.bus.publish("hc:{r}:gone", b"nobody")  # no subscriber: no error


async def test_a_slow_bus_subscriber_loses_the_oldest_and_counts(backends: Backends) -> None:
    async with backends.bus.subscribe("hc:{r}:fast") as sub:
        for i in range(1100):
            await backends.bus.publish("hc:{r}:fast", str(i).encode())
        await eventually(
            lambda: sub.dropped + sub._queue.qsize() >= 1100,
            message="all 1100 messages to reach the subscriber (kept or dropped)",
        )
        assert sub.dropped == 1100 - 1024
        assert await anext(sub) == str(1100 - 1024).encode()


async def test_a_message_published_once_subscribe_returns_is_received(backends: Backends) -> None:
    """``subscribe`` returns only once the subscription is active: no sleep is needed."""
    bus = backends.bus
    for i in range(50):
        channel = f"hc:{{r}}:new{i}" if i % 2 else "hc:{r}:again"  # new, and re-subscribed
        async with bus.subscribe(channel) as sub:
            await bus.publish(channel, str(i).encode())
            async with asyncio.timeout(timeout(5)):
                assert await anext(sub) == str(i).encode()


async def test_a_cancelled_subscribe_ends_and_does_not_confirm_the_next(
    backends: Backends,
) -> None:
    """A subscriber cancelled mid-subscribe ends; the late answer confirms nobody else."""
    bus = backends.bus
    for i in range(20):

        async def hold() -> None:
            async with bus.subscribe("hc:{r}:flaky"):
                await asyncio.Event().wait()

        task = asyncio.create_task(hold())
        for _ in range(i % 5):  # not synchronisation: cancel at various points of subscribe
            await asyncio.sleep(0)
        task.cancel()
        async with asyncio.timeout(timeout(5)):  # the cancellation is not lost on the way
            with contextlib.suppress(asyncio.CancelledError):
                await task
        async with bus.subscribe("hc:{r}:flaky") as sub:
            await bus.publish("hc:{r}:flaky", str(i).encode())
            async with asyncio.timeout(timeout(5)):
                assert await anext(sub) == str(i).encode()


async def test_publish_many_delivers_every_message_in_order(backends: Backends) -> None:
    async with (
        backends.bus.subscribe("hc:{r}:one") as one,
        backends.bus.subscribe("hc:{r}:two") as two,
    ):
        messages = [(f"hc:{{r}}:{'one' if i % 3 else 'two'}", str(i).encode()) for i in range(30)]
        await backends.bus.publish_many(messages)
        for sub, name in ((one, "one"), (two, "two")):
            want = [data for channel, data in messages if channel.endswith(name)]
            async with asyncio.timeout(timeout(5)):
                got = [await anext(sub) for _ in want]
            assert got == want


async def test_redis_subscribe_waits_for_the_server_to_confirm(redis_url: str) -> None:
    b = open_backends(redis_url)
    try:
        assert b.redis is not None
        await b.redis.execute_command("CLIENT", "PAUSE", 400, "ALL")  # answers nobody for 0.4 s
        entered = asyncio.Event()

        async def subscriber() -> None:
            async with b.bus.subscribe("hc:{r}:paused"):
                entered.set()

        task = asyncio.create_task(subscriber())
        await asyncio.sleep(0.2)  # not synchronisation: inside the pause, nothing may confirm
        assert not entered.is_set()
        async with asyncio.timeout(timeout(5)):
            await task
    finally:
        await b.close()


async def test_a_bus_subscription_survives_a_redis_restart(
    redis_server: RedisServer, redis_url: str
) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    b = open_backends(redis_url)
    try:
        async with b.bus.subscribe("hc:{r}:through") as sub:
            redis_server.restart()

            async def delivered() -> bytes | None:
                with contextlib.suppress(RedisConnectionError):  # until the client reconnects
                    await b.bus.publish("hc:{r}:through", b"back")
                return sub.get_nowait()

            message = "the subscription to be renewed after the restart"
            assert await eventually(delivered, timeout=15, interval=0.1, message=message) == b"back"
            async with b.bus.subscribe("hc:{r}:after") as after:  # confirmed as before
                await b.bus.publish("hc:{r}:after", b"new")
                async with asyncio.timeout(timeout(5)):
                    assert await anext(after) == b"new"
    finally:
        await b.close()
