"""Graceful drain: two real nodes on a real redis-server, real sockets.

Node A drains (as on SIGTERM): the command in hand gets its reply, the clients are closed
with 4010 and move to node B at once, resuming with exactly the events they missed; nobody
goes offline; a live interpreter stays on air; ``/healthz`` says draining; A stops.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

import server.node.app as app_module
from server.client import DRAINING, Client, CommandError
from server.events import Event
from server.fold import visible
from server.node.auth import Invites
from server.node.config import Assembly
from server.node.hub import RoomHub

from .conftest import SECRET, NodeFactory, free_port, timeout
from .test_channels_nodes import interpreter, quick

ROOM = "plenary"


def seen(client: Client, start: str) -> tuple[list[str], list[Event]]:
    """The ids and events of the ``events`` frames received after ``start``, in order (a
    frame may carry several entries under the last one's id: the hub batches)."""
    frames = [m for m in client.received if m["type"] == "events"]
    frames = [m for m in frames if _key(m["id"]) > _key(start)]
    return [m["id"] for m in frames], [e for m in frames for e in m["events"]]


def owed(
    hub: RoomHub, person: dict[str, Any], start: str, end: str
) -> tuple[list[str], list[Event]]:
    """The log's entries after ``start`` up to ``end`` with events ``person`` may see."""
    entries = [
        (i, [e for e in events if visible(e, person)])
        for i, events in hub.recent
        if _key(start) < _key(i) <= _key(end)
    ]
    entries = [(i, evs) for i, evs in entries if evs]
    return [i for i, _ in entries], [e for _, evs in entries for e in evs]


def _key(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


async def test_a_draining_node_sends_its_clients_to_the_other_without_a_gap(
    start_node: NodeFactory,
    redis_url: str,
    invites: Invites,
    assembly: Assembly,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = quick(assembly, grace_seconds=30)
    a = await start_node(redis_url, config=config, name="A")
    b = await start_node(redis_url, config=config, name="B")
    ana_token = invites.mint(room=ROOM, role="participant", name="Ana", lang="es")
    ana = await Client.connect(a.url, ana_token, elsewhere=[b.url])
    elena = await Client.connect(a.url, interpreter(invites, "Elena", "es"), elsewhere=[b.url])
    bob = await Client.connect(b.url, invites.mint(room=ROOM, role="participant", name="Bob"))
    clients = (ana, elena, bob)
    hub_a, hub_b = a.node.hubs[ROOM], b.node.hubs[ROOM]
    try:
        await elena.command("air.take")
        await ana.wait_for(lambda s: s["channels"]["channels"]["es"]["live"] == elena.me)
        start = {c.me: c.last for c in (ana, elena)}
        assert all(start.values())
        people = {c.me: dict(c.you) for c in (ana, elena)}
        log_start = hub_b.state["meta"]["last"]

        # Events keep flowing from node B all through the drain.
        stop = asyncio.Event()

        async def flow() -> None:
            while not stop.is_set():
                await bob.command("hand.raise")
                await bob.command("hand.lower", {"pid": bob.me})
                await asyncio.sleep(0.08)  # within the command rate (10/s)

        flowing = asyncio.create_task(flow())
        await asyncio.sleep(0.2)

        # Ana's command is in hand on A when the drain begins (its fold held back a little).
        real_submit = hub_a.submit

        async def slow_submit(actor: Any, name: str, args: Any, cid: str) -> Any:
            if name == "hand.raise" and actor.pid == ana.me:
                await asyncio.sleep(0.5)
            return await real_submit(actor, name, args, cid)

        monkeypatch.setattr(hub_a, "submit", slow_submit)
        asking = asyncio.create_task(ana.request("hand.raise", {}))
        [session] = [s for s in hub_a.sinks if s.person["pid"] == ana.me]
        async with asyncio.timeout(timeout(5)):
            while not getattr(session, "busy", False):
                await asyncio.sleep(0.005)
        began = time.monotonic()
        draining = asyncio.create_task(a.node.drain())

        reply = await asyncio.wait_for(asking, timeout(5))
        assert reply["ok"], reply
        assert ana.url == a.url, "the reply came on A, before the drain closed the socket"

        async with httpx.AsyncClient() as http:
            health = await http.get(f"{a.url}/healthz")
        assert health.status_code == 503 and health.json()["draining"] is True
        with pytest.raises(CommandError) as refused:
            await Client.connect(a.url, invites.mint(room=ROOM, role="participant", name="Cy"))
        assert refused.value.code == "draining"

        await asyncio.wait_for(draining, timeout(app_module.DRAIN_GRACE + 5))
        for c in (ana, elena):
            assert c.moving is not None
            await asyncio.wait_for(c.moving, timeout(5))
            assert c.moves == 1 and c.url == b.url and c.welcome["resumed"] is True
        assert time.monotonic() - began < app_module.DRAIN_GRACE, "nobody waited for a leave"

        await asyncio.sleep(0.3)
        stop.set()
        await flowing
        end = hub_b.state["meta"]["last"]
        async with asyncio.timeout(timeout(5)):
            while ana.last != end or elena.last != end:
                await asyncio.sleep(0.02)

        # No gap, no duplicate: each saw exactly the log's entries meant for them, once.
        for c in (ana, elena):
            ids, got = seen(c, start[c.me])  # type: ignore[arg-type]
            log_ids, due = owed(hub_b, people[c.me], start[c.me], end)  # type: ignore[arg-type]
            assert len(due) > 10
            assert got == due
            assert ids == sorted(set(ids), key=_key) and set(ids) <= set(log_ids)
            assert c.state["core"]["hands"] == hub_b.view_for(c.you)["core"]["hands"]
        assert ana.me in hub_b.state["core"]["hands"]

        # Nobody flapped: A's leaves came after the same people joined through B; the
        # interpreter never went away, so the channel never went dead.
        events = [e for i, evs in hub_b.recent if _key(i) > _key(log_start) for e in evs]
        kinds = [e["type"] for e in events]
        assert "air.released" not in kinds and "booth.away" not in kinds
        channel = hub_b.state["channels"]["channels"]["es"]
        assert channel["live"] == elena.me and channel["away"] is None
        for c in (ana, elena):
            mine = [e for e in events if e.get("pid", e.get("person", {}).get("pid")) == c.me]
            joined = [i for i, e in enumerate(mine) if e["type"] == "person.joined"]
            left = [i for i, e in enumerate(mine) if e["type"] == "person.left"]
            assert joined and left and joined[0] < left[0], mine
            assert hub_b.state["core"]["people"][c.me]["conns"] == [c.you["conn"]]
            assert c.you["conn"].startswith("B~")

        began = time.monotonic()
        await asyncio.wait_for(a.stop(), timeout(app_module.SHUTDOWN_GRACE))
        assert time.monotonic() - began < 5
    finally:
        for c in clients:
            await c.close()


async def test_a_command_sent_during_the_drain_is_answered_by_the_next_node(
    start_node: NodeFactory,
    redis_url: str,
    invites: Invites,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A command that reaches A after the drain began is not handled there; the client
    sends it again (same cid) on B after the move, and the log folds it once."""
    a = await start_node(redis_url, name="A")
    b = await start_node(redis_url, name="B")
    ana = await Client.connect(
        a.url, invites.mint(room=ROOM, role="participant", name="Ana"), elsewhere=[b.url]
    )
    hub_a, hub_b = a.node.hubs[ROOM], b.node.hubs[ROOM]
    try:
        real_submit = hub_a.submit

        async def slow_submit(actor: Any, name: str, args: Any, cid: str) -> Any:
            if name == "hand.raise" and actor.pid == ana.me:
                await asyncio.sleep(0.5)
            return await real_submit(actor, name, args, cid)

        monkeypatch.setattr(hub_a, "submit", slow_submit)
        first = asyncio.create_task(ana.request("hand.raise", {}))
        [session] = [s for s in hub_a.sinks if s.person["pid"] == ana.me]
        async with asyncio.timeout(timeout(5)):
            while not getattr(session, "busy", False):
                await asyncio.sleep(0.005)
        draining = asyncio.create_task(a.node.drain())
        await asyncio.sleep(0.05)
        assert getattr(session, "draining", False)
        second = await ana.request("hand.lower", {"pid": ana.me}, cid="late-1")
        assert second["ok"] and not second["duplicate"], second
        assert (await first)["ok"]
        await draining
        assert ana.moves == 1 and ana.url == b.url
        lowered = [e for _, evs in hub_b.recent for e in evs if e["type"] == "hand.lowered"]
        assert len(lowered) == 1 and ana.me not in hub_b.state["core"]["hands"]
    finally:
        await ana.close()


async def test_a_client_without_another_node_is_told_to_come_back(
    start_node: NodeFactory, redis_url: str, invites: Invites
) -> None:
    """Only one node: the drain still closes with 4010 and the resume hint, and the
    client's reconnects are refused (``draining``) instead of hanging."""
    a = await start_node(redis_url, name="A")
    ana = await Client.connect(a.url, invites.mint(room=ROOM, role="participant", name="Ana"))
    try:
        last = ana.last
        await a.node.drain(within=1.0)
        assert ana.moving is not None
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(ana.moving, timeout(5))
        assert ana.close_code == DRAINING
        assert ana.close_reason == f"node draining; resume after {last}"
        assert ana.moves == 0
    finally:
        await ana.close()


async def test_serve_drains_on_sigterm_and_exits_cleanly(redis_url: str, invites: Invites) -> None:
    port = free_port()
    env = {**os.environ, "HEMICYCLE_SECRET": SECRET, "HEMICYCLE_NODE": "S"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--backend", redis_url],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        token = invites.mint(room=ROOM, role="participant", name="Sokha")
        async with asyncio.timeout(timeout(20)):
            while True:
                try:
                    sokha = await Client.connect(url, token)
                    break
                except OSError:
                    await asyncio.sleep(0.1)
        last = sokha.last
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(timeout(5)):
            while sokha.close_code is None:
                await asyncio.sleep(0.02)
        assert sokha.close_code == DRAINING
        assert sokha.close_reason == f"node draining; resume after {last}"
        began = time.monotonic()
        code = await asyncio.to_thread(proc.wait, timeout(app_module.DRAIN_GRACE + 10))
        assert code == 0, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() - began < app_module.DRAIN_GRACE + 5
        assert sokha.moving is not None
        with pytest.raises(ConnectionError):  # nowhere else to go: it says so
            await asyncio.wait_for(sokha.moving, timeout(5))
        await sokha.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


class Balancer:
    """A loopback TCP forwarder standing for the load balancer: new connections go to
    ``target``, which the test switches when a node drains."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.mark.browser
async def test_the_page_moves_at_once_on_a_drain(
    start_node: NodeFactory, redis_url: str, invites: Invites, browser: Any
) -> None:
    a = await start_node(redis_url, name="A")
    b = await start_node(redis_url, name="B")
    balancer = Balancer(a.port)
    base = await balancer.start()
    bob = await Client.connect(b.url, invites.mint(room=ROOM, role="participant", name="Bob"))
    hub_b = b.node.hubs[ROOM]
    try:
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        token = invites.mint(room=ROOM, role="participant", name="Sokha")
        await page.goto(f"{base}/r/{ROOM}#t={token}")
        await page.wait_for_function("() => HC.connected === true", timeout=timeout(10) * 1000)
        pid = await page.evaluate("HC.you.pid")
        assert any(s.person["pid"] == pid for s in a.node.hubs[ROOM].sinks)

        balancer.target = b.port  # the load balancer saw /healthz go 503
        draining = asyncio.create_task(a.node.drain())
        await bob.command("hand.raise")  # while the page moves
        await asyncio.wait_for(draining, timeout(app_module.DRAIN_GRACE + 5))
        await page.wait_for_function(
            "() => HC.connected === true && HC.drains === 1", timeout=timeout(2) * 1000
        )
        [moved] = [s for s in hub_b.sinks if s.person["pid"] == pid]
        assert hub_b.state["core"]["people"][pid]["conns"][0].startswith("B~")
        await page.wait_for_function(
            f"() => HC.last === {hub_b.state['meta']['last']!r}", timeout=timeout(5) * 1000
        )
        hands = await page.evaluate("HC.state.core.hands")
        assert bob.me in hands and hands == hub_b.view_for(moved.person)["core"]["hands"]
        assert await page.evaluate("HC.status") == "connected"
        assert not errors
    finally:
        await bob.close()
        await balancer.close()
