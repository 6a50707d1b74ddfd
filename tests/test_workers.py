"""Media workers (server/media/workers.py, worker.py): listeners spread over two worker
processes of one node, real aiortc peers, a worker killed mid-session."""

from __future__ import annotations

import os
import signal

import pytest

from server.media.workers import WorkerPool

from .audio_helpers import (
    listen,
    loopback_ice,  # noqa: F401 (fixture)
    opus_tone,
    people,
    publish,
    steps,
    tagged,
)
from .conftest import timeout
from .waiting import eventually

pytestmark = pytest.mark.usefixtures("loopback_ice")


@pytest.fixture
def media_workers() -> int:
    return 2


async def pool_of(node) -> WorkerPool:  # type: ignore[no-untyped-def]
    """The node's workers, once all have started (each imports aiortc: seconds when busy)."""
    pool = node.node.feature["audio"].workers
    assert isinstance(pool, WorkerPool), "the node must run media workers here"
    await eventually(
        lambda: [link.ready.is_set() for link in pool.links],
        until=all,
        message="both media workers to start",
        timeout=60,
    )
    return pool


async def test_listeners_on_both_workers_hear_the_publishers_bytes(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    pool = await pool_of(node)
    pids = pool.pids()
    assert len(set(pids)) == 2 and os.getpid() not in pids, "two worker processes"
    chair, *listeners = await people(
        node, invites, ("Chair", "moderator"), *((f"L{i}", "participant") for i in range(4))
    )
    ears = [await listen(c) for c in listeners]
    assert sorted(len(link.listeners) for link in pool.links) == [2, 2], (
        "an offer goes to the worker with the fewest listeners"
    )
    mic = await publish(chair, "floor")
    sent = tagged(opus_tone(440, 60), tag=7)
    await mic.play(sent)
    for ear in ears:
        heard = await ear.wait(0, len(sent), timeout(5))
        assert [h.payload for h in heard] == sent, "every listener gets the bytes unchanged"
        assert steps(heard) == {960}
        assert ear.on(1) == [], "nothing underneath while listening to the floor"
    # Each frame crossed to each worker once, not once per listener.
    assert [link.pushed for link in pool.links] == [len(sent), len(sent)]
    await mic.close()
    for ear in ears:
        await ear.close()
    for c in (chair, *listeners):
        await c.close()
    await eventually(
        lambda: [len(link.listeners) for link in pool.links],
        until=lambda n: n == [0, 0],
        message="the workers to close the peer connections of the sockets that left",
    )


async def test_a_killed_worker_is_replaced_and_its_listener_reconnects(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    pool = await pool_of(node)
    chair, ana, bo = await people(
        node, invites, ("Chair", "moderator"), ("Ana", "participant"), ("Bo", "participant")
    )
    ana_ear = await listen(ana)
    bo_ear = await listen(bo)
    victim = next(link for link in pool.links if len(link.listeners) == 1)
    assert len({link.pid for link in pool.links}) == 2
    dead_pid = victim.pid
    assert dead_pid is not None
    mic = await publish(chair, "floor")
    await mic.play(tagged(opus_tone(440, 10), tag=1))
    await ana_ear.wait(0, 10, timeout(5))
    await bo_ear.wait(0, 10, timeout(5))

    os.kill(dead_pid, signal.SIGKILL)
    # Whoever was on the dead worker is told its audio failed (the page offers again).
    await eventually(
        lambda: [c for c in (ana, bo) if any(m["type"] == "rtc.closed" for m in c.received)],
        until=lambda c: len(c) == 1,
        message="the listener of the killed worker to be told rtc.closed",
    )
    (lost,) = [c for c in (ana, bo) if any(m["type"] == "rtc.closed" for m in c.received)]
    message = next(m for m in lost.received if m["type"] == "rtc.closed")
    assert message["pc"] == "listen" and message["code"] == "ice_failed"
    await eventually(
        lambda: (pool.restarts, victim.pid, victim.ready.is_set()),
        until=lambda r: r[0] == 1 and r[1] != dead_pid and r[2],
        message="the killed worker to be started again",
        timeout=30,  # a new process imports aiortc: seconds on a busy machine
    )
    assert victim.pid is not None and os.sched_getaffinity(victim.pid) == {victim.core}, (
        "the new worker is pinned where the old one was"
    )
    kept = bo_ear if lost is ana else ana_ear
    gone = ana_ear if lost is ana else bo_ear
    await gone.close()
    again = await listen(lost)  # what the page does on rtc.closed
    sent = tagged(opus_tone(440, 30), tag=2)
    before = len(kept.on(0))
    await mic.play(sent)
    heard = await again.wait(0, len(sent), timeout(5))
    assert [h.payload for h in heard] == sent, "the reconnected listener hears again"
    await kept.wait(0, before + len(sent), timeout(5))
    assert [h.payload for h in kept.on(0)[before:]] == sent, "the other worker never stopped"
    await mic.close()
    await again.close()
    await kept.close()
    for c in (chair, ana, bo):
        await c.close()


async def test_each_worker_is_pinned_to_a_core_of_its_own_round_robin_unless_told_not() -> None:
    from server.node.metrics import Metrics

    cores = sorted(os.sched_getaffinity(0))
    async with WorkerPool(len(cores) + 1, Metrics(), []) as pool:
        masks = [os.sched_getaffinity(pid) for pid in pool.pids() if pid is not None]
        assert masks == [{cores[k % len(cores)]} for k in range(len(cores) + 1)]
    async with WorkerPool(1, Metrics(), [], pin=False) as pool:
        (pid,) = pool.pids()
        assert pid is not None and os.sched_getaffinity(pid) == set(cores)


def test_workers_setting() -> None:
    from server.errors import ConfigError
    from server.media.setup import MediaConfig, default_workers
    from server.node.config import Settings

    assert MediaConfig.from_extra({}).workers == default_workers() >= 1, "one per core"
    assert MediaConfig.from_extra({"media": {"workers": 0}}).workers == 0
    for bad in (-1, 65, "2", 1.5, True):
        with pytest.raises(ConfigError, match=r"media\.workers"):
            MediaConfig.from_extra({"media": {"workers": bad}}, "assembly.toml")
    assert MediaConfig.from_extra({}).pin_workers is True
    assert MediaConfig.from_extra({"media": {"pin_workers": False}}).pin_workers is False
    with pytest.raises(ConfigError, match=r"media\.pin_workers"):
        MediaConfig.from_extra({"media": {"pin_workers": "no"}}, "assembly.toml")
    config = MediaConfig.from_extra({"media": {"workers": 3}})
    assert config.with_workers(None).workers == 3, "no environment: the file decides"
    assert config.with_workers(0).workers == 0
    env = {"HEMICYCLE_SECRET": "x" * 40}
    assert Settings.from_env(env).media_workers is None
    assert Settings.from_env({**env, "HEMICYCLE_MEDIA_WORKERS": "2"}).media_workers == 2
    for bad_env in ("two", "-1", "65"):
        with pytest.raises(ConfigError, match="HEMICYCLE_MEDIA_WORKERS"):
            Settings.from_env({**env, "HEMICYCLE_MEDIA_WORKERS": bad_env})
