"""Wiring: one :class:`Node` (backends, hubs, invites, metrics) behind a Starlette app."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from . import ballots, exports, poll_exports, recording
from .auth import Invites
from .backends import Backends, open_backends
from .config import Assembly, Settings, load_assembly
from .errors import BadArgs, HemicycleError
from .http import api, moderator, node_of
from .hub import RoomHub
from .media import MediaNode
from .metrics import Metrics
from .rtc_setup import MediaConfig
from .sessions import websocket_endpoint
from .types import SYSTEM, Actor

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent.parent / "static"


SHUTDOWN_GRACE = 15.0
HEARTBEAT_EVERY = 2.0
HEARTBEAT_TTL = 6.0
"""A node silent for this long is dead: the others retire its connections."""


class Node:
    """Everything one server process holds. Start with ``async with node:``."""

    def __init__(self, settings: Settings, assembly: Assembly,
                 backends: Backends | None = None) -> None:
        self.settings = settings
        self.assembly = assembly
        self.name = settings.node or f"node-{secrets.token_hex(3)}"
        self.backends = backends or open_backends(settings.backend)
        self._own_backends = backends is None
        self.metrics = Metrics()
        self.invites = Invites(settings.secret)
        self.hubs: dict[str, RoomHub] = {}
        info = {"name": assembly.name, "languages": list(assembly.languages),
                "floor": assembly.floor,
                "rooms": {r.id: r.title for r in assembly.rooms.values()},
                "members": {m.id: {"name": m.name, "country": m.country}
                            for m in assembly.members}}
        for room in assembly.rooms.values():
            hub = RoomHub(room, self.backends, self.metrics, node=self.name)
            hub.assembly_info = {**info, "title": room.title, "floor": room.floor,
                                 "channels": list(room.channels)}
            self.hubs[room.id] = hub
        self.media = MediaNode(self.name, MediaConfig.from_extra(assembly.extra, assembly.source),
                               settings.recordings)
        for hub in self.hubs.values():
            self.media.add(hub)

    async def __aenter__(self) -> Node:
        await self.backends.heartbeat(self.name, HEARTBEAT_TTL)
        for hub in self.hubs.values():
            await hub.start()
        await self.media.start()
        self._watch = asyncio.create_task(self._keep_alive(), name=f"heartbeat-{self.name}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        # A node stops within SHUTDOWN_GRACE whatever hangs; what hung is logged.
        try:
            async with asyncio.timeout(SHUTDOWN_GRACE):
                await self._shutdown()
        except TimeoutError:
            stacks = io.StringIO()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.print_stack(limit=8, file=stacks)
            log.error("node %s: shutdown took over %.0f s; stopping anyway. Tasks:\n%s",
                      self.name, SHUTDOWN_GRACE, stacks.getvalue())

    async def _shutdown(self) -> None:
        await self.media.close()
        self._watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watch
        for hub in self.hubs.values():
            await hub.close()
        if self._own_backends:
            await self.backends.close()

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY)
            try:
                await self.backends.heartbeat(self.name, HEARTBEAT_TTL)
                await self.reap()
            except Exception as exc:  # Redis away for a moment: try again next beat
                log.warning("heartbeat/reap failed: %s", exc)

    async def reap(self) -> None:
        """Retire the connections of nodes whose heartbeat expired (they died without
        saying goodbye): append their ``leave`` so people go offline and live interpreters
        enter their grace period. Any node may do it; the ``leave:<conn>`` id makes the
        first one count."""
        for hub in self.hubs.values():
            conns = [(p["pid"], c) for p in hub.state["core"]["people"].values()
                     for c in p["conns"]]
            owners = {c.split("~", 1)[0] for _, c in conns if "~" in c} - {self.name}
            if not owners:
                continue
            dead = owners - await self.backends.alive(owners)
            for pid, conn in conns:
                if conn.split("~", 1)[0] in dead:
                    log.info("retiring connection %s of dead node", conn)
                    with contextlib.suppress(HemicycleError):
                        await hub.submit(Actor("node", SYSTEM), "leave",
                                         {"pid": pid, "conn": conn}, f"leave:{conn}")

    def link(self, token: str, room: str) -> str:
        return f"{self.settings.base_url}/r/{room}#t={token}"


def create_app(settings: Settings | None = None, assembly: Assembly | None = None,
               backends: Backends | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    if not settings.secret:
        raise ValueError("no invite secret: set HEMICYCLE_SECRET (or use `hemicycle demo`)")
    assembly = assembly or load_assembly(settings.config)
    node = Node(settings, assembly, backends)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with node, ballots.Service(node):
            yield

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/r/{room}", room_page),
            Route("/healthz", healthz),
            Route("/metrics", metrics),
            Route("/api/invites", mint_invite, methods=["POST"]),
            *exports.ROUTES,
            *poll_exports.ROUTES,
            *recording.ROUTES,
            WebSocketRoute("/ws", websocket_endpoint),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        lifespan=lifespan,
    )
    app.state.node = node
    return app


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html")


async def room_page(request: Request) -> Response:
    node: Node = request.app.state.node
    if request.path_params["room"] not in node.hubs:
        return JSONResponse({"code": "unknown_room", "message": "no such room"}, 404)
    return FileResponse(STATIC / "room.html", headers={"Cache-Control": "no-store"})


async def healthz(request: Request) -> Response:
    node: Node = request.app.state.node
    rooms = {rid: {"ready": hub.ready.is_set(), "last": hub.state["meta"]["last"],
                   "connections": len(hub.sinks)} for rid, hub in node.hubs.items()}
    ok = all(r["ready"] for r in rooms.values())
    backend = node.settings.backend.split("@")[-1]  # never show a password
    return JSONResponse({"ok": ok, "node": node.name, "backend": backend, "rooms": rooms},
                        200 if ok else 503)


async def metrics(request: Request) -> Response:
    node: Node = request.app.state.node
    return Response(node.metrics.render(), media_type="text/plain; version=0.0.4")


@api
async def mint_invite(request: Request) -> Response:
    """Moderators mint invites over HTTP: ``Authorization: Bearer <their own token>``."""
    node = node_of(request)
    claims = moderator(request, "mint invites")
    try:
        body: Any = await request.json()
    except ValueError:
        raise BadArgs("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadArgs("the body must be a JSON object")
    room = body.pop("room", claims["room"])
    if room not in node.hubs:
        raise BadArgs(f"no room {room!r}")
    hours = body.pop("hours", 72)
    if not isinstance(hours, int | float) or not 0 < hours <= 24 * 60:
        raise BadArgs("'hours' must be a number of hours up to 60 days")
    body.pop("pid", None)
    for key in ("role", "name"):
        if key not in body:
            raise BadArgs(f"'{key}' is required")
    token = node.invites.mint(room=room, hours=float(hours), **body)
    return JSONResponse({"token": token, "link": node.link(token, room)})
