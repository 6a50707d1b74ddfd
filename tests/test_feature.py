"""The one way a feature plugs in (server/node/feature.py): frames, folds, welcomes, leaves,
routes and the lifecycle, on a real node with the memory backend and a real WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from server.client import Client
from server.errors import Refused
from server.node.app import Node
from server.node.backends import open_backends
from server.node.config import Assembly, Settings
from server.node.feature import Feature, FrameHandler, Host, dispatch_table
from server.node.hub import RoomHub, Sink
from server.node.sessions import Session
from server.types import Event
from server.web import app as web_app

from .conftest import SECRET, NodeFactory, timeout
from .waiting import eventually


class Probe(Feature):
    """A feature that records every call the node makes to it."""

    name = "probe"

    def __init__(self, log: list[str], *, fail_start: bool = False) -> None:
        self.log = log
        self.fail_start = fail_start
        self.folds: list[str] = []

    def frames(self) -> Mapping[str, FrameHandler]:
        return {"probe.echo": self.echo, "probe.refuse": self.refuse}

    def routes(self) -> Sequence[BaseRoute]:
        async def refused(request: Request) -> Response:
            raise Refused("not today", code="no_such_channel")

        async def ok(request: Request) -> Response:
            return JSONResponse({"folds": len(self.folds)})

        return [Route("/api/probe", ok), Route("/api/probe/refused", refused)]

    def welcome(self, hub: RoomHub) -> Mapping[str, Any]:
        return {"probe": hub.room}

    def folded(self, hub: RoomHub, entry_id: str, events: list[Event]) -> None:
        self.folds.extend(e["type"] for e in events)

    async def left(self, hub: RoomHub, sink: Sink) -> None:
        self.log.append(f"left {sink.person['name']}")

    @contextlib.asynccontextmanager
    async def running(self, node: Host) -> AsyncIterator[None]:
        if self.fail_start:
            raise RuntimeError("probe cannot start")
        self.log.append(f"start {self.name} ({len(node.hubs)} rooms)")
        try:
            yield
        finally:
            self.log.append(f"stop {self.name}")

    async def echo(self, session: Session, data: dict[str, Any]) -> None:
        session.send({"type": "probe.echoed", "pid": session.person["pid"], "n": data.get("n")})

    async def refuse(self, session: Session, data: dict[str, Any]) -> None:
        raise Refused("the probe says no", code="probe_refused")


class Second(Probe):
    name = "second"

    def frames(self) -> Mapping[str, FrameHandler]:
        return {}


def test_a_frame_type_claimed_twice_or_a_node_frame_stops_the_start() -> None:
    with pytest.raises(ValueError, match="'probe.echo' is claimed by both 'probe' and 'probe'"):
        dispatch_table([Probe([]), Probe([])])

    class Greedy(Feature):
        name = "greedy"

        def frames(self) -> Mapping[str, FrameHandler]:
            return {"command": Probe([]).echo}

    with pytest.raises(ValueError, match="'greedy' claims the node's frame 'command'"):
        dispatch_table([Greedy()])


async def test_features_start_in_order_stop_in_reverse_and_a_failed_start_closes_the_rest(
    assembly: Assembly,
) -> None:
    log: list[str] = []
    settings = Settings(secret=SECRET, node="n1")
    node = Node(settings, assembly, open_backends("memory://"), [Probe(log), Second(log)])
    async with node:
        assert log == ["start probe (2 rooms)", "start second (2 rooms)"]
        assert all(hub.ready.is_set() for hub in node.hubs.values())
    assert log[2:] == ["stop second", "stop probe"]

    log.clear()
    broken = Node(
        settings, assembly, open_backends("memory://"), [Probe(log), Second(log, fail_start=True)]
    )
    with pytest.raises(RuntimeError, match="probe cannot start"):
        await broken.__aenter__()
    assert log == ["start probe (2 rooms)", "stop probe"]
    assert all(hub._task is not None and hub._task.done() for hub in broken.hubs.values())


async def test_a_feature_gets_its_frames_folds_welcome_leaves_and_routes(
    start_node: NodeFactory, invites: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[str] = []
    probe = Probe(log)
    stock = web_app.features
    monkeypatch.setattr(web_app, "features", lambda s, a: [*stock(s, a), probe])
    node = await start_node()
    token = invites.mint(room="plenary", role="participant", name="Anna Huber", org="ecpat-at")
    client = await Client.connect(node.url, token)
    try:
        assert client.welcome["assembly"]["probe"] == "plenary"
        await client.send({"type": "probe.echo", "n": 7})
        echoed = await client.wait_message(lambda m: m["type"] == "probe.echoed")
        assert echoed["n"] == 7 and echoed["pid"] == client.welcome["you"]["pid"]
        # A handler's refusal is an error frame; the connection stays up.
        await client.send({"type": "probe.refuse"})
        error = await client.wait_message(lambda m: m["type"] == "error")
        assert error["code"] == "probe_refused"
        await client.command("hand.raise")
        await eventually(
            lambda: "hand.raised" in probe.folds, message="the fold reaches the feature"
        )
        assert "person.joined" in probe.folds
    finally:
        await client.close()
    await eventually(lambda: "left Anna Huber" in log, message="the leave reaches the feature")

    async with httpx.AsyncClient(base_url=node.url) as http:
        assert (await http.get("/api/probe")).json()["folds"] >= 2
        refused = await http.get("/api/probe/refused")
        # A HemicycleError raised by any route is mapped once, by the app's handler.
        assert refused.status_code == 404
        assert refused.json() == {"code": "no_such_channel", "message": "not today"}


def test_a_standard_node_folds_the_slices_clients_apply(assembly: Assembly) -> None:
    """The node's rules come from its own slice and its features'; the standard list gives
    the same commands and events as ``fold.RULES``, which the Python client applies."""
    from server import fold

    settings = Settings(secret=SECRET, node="n1")
    node = Node(
        settings, assembly, open_backends("memory://"), web_app.features(settings, assembly)
    )
    assert [s.name for s in node.rules.slices] == [s.name for s in fold.RULES.slices]
    assert set(node.rules.commands) == set(fold.RULES.commands)
    assert set(node.rules.apply) == set(fold.RULES.apply)
    assert all(hub.rules is node.rules for hub in node.hubs.values())


async def test_a_bus_that_cannot_subscribe_fails_the_start_instead_of_hanging(
    assembly: Assembly,
) -> None:
    """The room's bus subscription is part of its start: when it fails (Redis away just
    then), the node's start fails with it and closes what it had started."""
    from server.node.bus import MemoryBus

    class Unreachable(MemoryBus):
        @contextlib.asynccontextmanager
        async def subscribe(self, channel: str) -> AsyncIterator[Any]:
            raise ConnectionError("the bus is away")
            yield

    backends = open_backends("memory://")
    backends.bus = Unreachable()
    log: list[str] = []
    node = Node(Settings(secret=SECRET, node="n1"), assembly, backends, [Probe(log)])
    async with asyncio.timeout(timeout(5)):
        with pytest.raises(ConnectionError, match="the bus is away"):
            await node.__aenter__()
    assert log == [], "no feature starts on a node whose rooms did not"
    assert all(hub._task is None or hub._task.done() for hub in node.hubs.values())
