"""Wiring: one :class:`Node` (backends, hubs, invites, metrics) behind a Starlette app."""

from __future__ import annotations

import contextlib
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

from . import exports
from .auth import Invites
from .backends import Backends, open_backends
from .config import Assembly, Settings, load_assembly
from .errors import AuthError, BadArgs, Forbidden, HemicycleError
from .hub import RoomHub
from .media import MediaNode
from .metrics import Metrics
from .recording import list_recordings, recording_file
from .rtc_setup import MediaConfig
from .sessions import websocket_endpoint
from .types import MODERATOR

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent.parent / "static"


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
        for hub in self.hubs.values():
            await hub.start()
        await self.media.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.media.close()
        for hub in self.hubs.values():
            await hub.close()
        if self._own_backends:
            await self.backends.close()

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
        async with node:
            yield

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/r/{room}", room_page),
            Route("/healthz", healthz),
            Route("/metrics", metrics),
            Route("/api/invites", mint_invite, methods=["POST"]),
            *exports.ROUTES,
            Route("/api/recordings", recordings),
            Route("/api/recordings/{room}/{rec}/{name}", recording_download),
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


def _moderator(request: Request, what: str) -> dict[str, Any]:
    """The claims of the ``Authorization: Bearer`` token, which must be a moderator's."""
    node: Node = request.app.state.node
    header = request.headers.get("authorization", "")
    claims = node.invites.verify(header.removeprefix("Bearer ").strip() or None)
    if claims["role"] != MODERATOR:
        raise Forbidden(f"only moderators may {what}")
    return claims


def _error(exc: HemicycleError) -> Response:
    status = 401 if isinstance(exc, AuthError) else 403 if isinstance(exc, Forbidden) else 400
    return JSONResponse(exc.to_wire(), status)


async def recordings(request: Request) -> Response:
    """The recordings of a room (``?room=``, default the token's): moderators only."""
    node: Node = request.app.state.node
    try:
        claims = _moderator(request, "list recordings")
        room = request.query_params.get("room", claims["room"])
        if room not in node.hubs:
            raise BadArgs(f"no room {room!r}")
    except HemicycleError as exc:
        return _error(exc)
    rec = node.hubs[room].state.get("audio", {}).get("recording")
    return JSONResponse({"room": room, "recording": rec,
                         "recordings": list_recordings(node.settings.recordings, room)})


async def recording_download(request: Request) -> Response:
    node: Node = request.app.state.node
    try:
        _moderator(request, "download recordings")
    except HemicycleError as exc:
        return _error(exc)
    p = request.path_params
    path = recording_file(node.settings.recordings, p["room"], p["rec"], p["name"]) \
        if p["room"] in node.hubs else None
    if path is None:
        return JSONResponse({"code": "not_found", "message": "no such recording file"}, 404)
    return FileResponse(path, media_type="audio/ogg",
                        filename=f"{p['room']}-{p['rec']}-{p['name']}")


async def mint_invite(request: Request) -> Response:
    """Moderators mint invites over HTTP: ``Authorization: Bearer <their own token>``."""
    node: Node = request.app.state.node
    try:
        claims = _moderator(request, "mint invites")
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
        token = node.invites.mint(room=room, hours=float(hours), **body)
    except HemicycleError as exc:
        return _error(exc)
    except TypeError as exc:
        return JSONResponse({"code": "bad_args", "message": str(exc)}, 400)
    return JSONResponse({"token": token, "link": node.link(token, room)})
