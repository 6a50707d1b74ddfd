"""The HTTP and WebSocket application around one :class:`~server.node.app.Node`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from ..errors import BadArgs
from ..media import recording
from ..node import ballots
from ..node.app import Node
from ..node.backends import Backends
from ..node.config import Assembly, Settings, load_assembly
from ..node.sessions import websocket_endpoint
from . import results, transcripts
from .http import api, moderator, node_of

STATIC = Path(__file__).resolve().parents[2] / "static"


def create_app(
    settings: Settings | None = None,
    assembly: Assembly | None = None,
    backends: Backends | None = None,
) -> Starlette:
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
            *transcripts.ROUTES,
            *results.ROUTES,
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
    rooms = {
        rid: {
            "ready": hub.ready.is_set(),
            "last": hub.state["meta"]["last"],
            "connections": len(hub.sinks),
        }
        for rid, hub in node.hubs.items()
    }
    ok = all(r["ready"] for r in rooms.values())
    backend = node.settings.backend.split("@")[-1]  # never show a password
    return JSONResponse(
        {"ok": ok, "node": node.name, "backend": backend, "rooms": rooms}, 200 if ok else 503
    )


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
