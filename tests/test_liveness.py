"""A busy node is not a dead node (server/node/heartbeat.py, ``RoomHub._retired``).

Two nodes on a real redis-server. Node B's event loop is starved past the heartbeat TTL
(a real ``time.sleep`` on B's own loop, in its own thread): its heartbeat, beaten from a
thread, keeps it alive and node A retires nobody. Node B stopped outright (SIGSTOP, a
``hemicycle serve`` process) past the TTL *is* taken for dead; when it wakes it joins its
people again — the live interpreter keeps the air — and their later leave still counts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import uvicorn

import server.node.app as app_module
from server.client import Client
from server.node.auth import Invites
from server.node.config import Assembly, Settings
from server.node.heartbeat import Heartbeat
from server.node.hub import RoomHub
from server.web.app import create_app

from . import conftest
from .conftest import SECRET, NodeFactory, free_port, timeout
from .test_cluster import connect_when_up
from .waiting import eventually

pytestmark = pytest.mark.redis


class NodeOnItsOwnLoop:
    """A node (uvicorn) on an event loop of its own, in a thread, so that a test can block
    that loop (``starve``) while the test's own loop and node A go on."""

    def __init__(self, backend: str, name: str, assembly: Assembly) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = Settings(
            port=self.port,
            secret=SECRET,
            backend=backend,
            node=name,
            reconnect_grace=0.0,
            conn_burst=100_000.0,
            media_workers=0,
        )
        config = uvicorn.Config(
            create_app(settings, assembly), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = conftest.TestServer(config)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(self.server.serve(),), daemon=True
        )

    async def start(self) -> None:
        self.thread.start()
        await eventually(
            lambda: self.server.started, timeout=timeout(20), message="node B to start"
        )

    def starve(self, seconds: float) -> None:
        """Hold B's event loop for ``seconds`` (a blocking call on the loop, as a CPU-bound
        burst or a long collection would)."""
        self.loop.call_soon_threadsafe(time.sleep, seconds)

    async def stop(self) -> None:
        self.server.should_exit = True
        await asyncio.to_thread(self.thread.join, timeout(30))
        assert not self.thread.is_alive(), "node B did not stop"
        self.loop.close()


async def test_the_heartbeat_goes_on_while_the_loop_is_busy_and_stops_when_it_is_stuck() -> None:
    """Beats while the loop is blocked for less than ``stall_limit``; none once it has been
    blocked for longer (a wedged node must still be found dead); again once it turns."""
    beats: list[float] = []
    heartbeat = Heartbeat("n", lambda node, ttl: beats.append(time.monotonic()), 0.05, 6, 0.5)
    heartbeat.start()
    try:
        await asyncio.sleep(0.2)
        assert beats, "no beat from the thread"
        blocked = time.monotonic()
        time.sleep(2.0)  # this test's own loop, held: as a stuck node's
        resumed = time.monotonic()
        during = [t - blocked for t in beats if blocked <= t < resumed]
        assert during and min(during) < 0.5, "no beat while the loop was busy"
        assert not [t for t in during if t > 1.0], "beats went on while the loop was stuck"
        await asyncio.sleep(0.5)
        assert [t for t in beats if t > resumed], "no beat once the loop turned again"
    finally:
        await heartbeat.stop()


def left(hub: RoomHub, pid: str, since: int) -> list[Any]:
    """The ``person.left`` events of ``pid`` folded by ``hub`` after its ``since``-th entry."""
    return [
        e
        for _, events in list(hub.recent)[since:]
        for e in events
        if e["type"] == "person.left" and e["pid"] == pid
    ]


async def test_a_node_whose_loop_is_starved_past_the_ttl_keeps_its_people(
    start_node: NodeFactory,
    redis_url: str,
    invites: Invites,
    assembly: Assembly,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app_module, "HEARTBEAT_EVERY", 0.5)  # A looks for the dead often
    a = await start_node(redis_url, name="A")
    b = NodeOnItsOwnLoop(redis_url, "B", assembly)
    await b.start()
    try:
        sokha = await Client.connect(
            b.url, invites.mint(room="plenary", role="participant", name="Sokha")
        )
        hub = a.node.hubs["plenary"]
        await eventually(
            lambda: hub.state["core"]["people"].get(sokha.me, {}).get("conns"),
            message="node A to see Sokha online through node B",
        )
        since = len(hub.recent)
        stall = app_module.HEARTBEAT_TTL + 3
        b.starve(stall)
        # Not synchronisation: the stall itself, which A watches throughout (a reap every
        # 0.5 s); before the heartbeat thread, A retired Sokha about 6 s into it.
        await asyncio.sleep(stall + 1)
        assert not left(hub, sokha.me, since), "node A took the starved node B for dead"
        assert hub.state["core"]["people"][sokha.me]["conns"]
        assert await a.node.backends.alive({"B"}) == {"B"}
        await sokha.command("hand.raise")  # B answers again
        await sokha.close()
    finally:
        await b.stop()


async def test_a_node_stopped_past_the_ttl_joins_its_people_again_when_it_wakes(
    start_node: NodeFactory, redis_url: str, invites: Invites, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What users saw before: node B stopped for 9 s (SIGSTOP; a frozen VM, a host's
    hiccup) and the others logged its people's leaves; B, awake, kept their connections
    open but never said they were back, so they stayed offline, and a live interpreter went
    off air when the grace ran out, while still talking into the microphone."""
    monkeypatch.setattr(app_module, "HEARTBEAT_EVERY", 0.2)
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
        token = invites.mint(
            room="plenary", role="interpreter", name="Elena", booth="es", pair=["en", "es"]
        )
        elena = await eventually(
            lambda: connect_when_up(url, token),
            timeout=timeout(20),
            interval=0.1,
            message=f"node B to accept connections at {url}",
        )
        await elena.command("air.take")
        hub = a.node.hubs["plenary"]
        es = hub.state["channels"]["channels"]["es"]
        await eventually(lambda: es["live"] == elena.me, message="A to see Elena on air")
        conn = hub.state["core"]["people"][elena.me]["conns"][0]
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            await eventually(  # the failure as users met it: offline, the grace started
                lambda: hub.state["channels"]["channels"]["es"]["away"],
                timeout=timeout(app_module.HEARTBEAT_TTL + 5),
                interval=0.05,
                message="node A to take the stopped node B for dead",
            )
            assert not hub.state["core"]["people"][elena.me]["conns"]
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        await eventually(
            lambda: hub.state["core"]["people"][elena.me]["conns"] == [conn],
            timeout=timeout(10),
            message="node B to join Elena's connection again once awake",
        )
        es = hub.state["channels"]["channels"]["es"]
        assert es["live"] == elena.me and es["away"] is None, es
        # the same connection, still open
        await elena.command("chat.post", {"chat": "booth", "text": "still here"})
        assert es["live"] == elena.me
        await elena.close()  # and the leave of that connection is not taken for a repeat
        await eventually(
            lambda: hub.state["core"]["people"][elena.me]["conns"],
            until=lambda conns: not conns,
            timeout=timeout(10),
            message="Elena's own leave to be logged after the rejoin",
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
