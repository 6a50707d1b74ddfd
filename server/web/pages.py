"""The node's own routes: the pages, health, metrics and minting invites."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .. import invites
from ..errors import BadArgs, Refused, WrongRoom
from ..node.http import moderator, node_of
from ..types import OBSERVER
from .assets import PREFIX, Assets

STATIC = Path(__file__).resolve().parents[2] / "static"
ASSETS = Assets(STATIC)
"""Read once at import: the files of a release do not change while it runs."""


async def index(request: Request) -> Response:
    return ASSETS.page("index.html")


async def room_page(request: Request) -> Response:
    if request.path_params["room"] not in node_of(request).served:
        raise WrongRoom("no such room", code="unknown_room")
    return ASSETS.page("room.html")


async def healthz(request: Request) -> Response:
    node = node_of(request)
    rooms = {
        rid: {
            "ready": hub.ready.is_set(),
            "last": hub.state["meta"]["last"],
            "connections": len(hub.sinks),
        }
        for rid, hub in node.hubs.items()
    }
    # A draining node answers 503 so that a load balancer takes it out of rotation.
    ok = all(r["ready"] for r in rooms.values()) and not node.draining
    backend = node.settings.backend.split("@")[-1]  # never show a password
    body = {
        "ok": ok,
        "node": node.name,
        "backend": backend,
        "draining": node.draining,
        "rooms": rooms,
    }
    return JSONResponse(body, 200 if ok else 503)


async def metrics(request: Request) -> Response:
    node = node_of(request)
    return Response(node.metrics.render(), media_type="text/plain; version=0.0.4")


INVITE_KEYS = ("room", "role", "name", "hours", "org", "country", "lang", "booth", "pair")
"""What ``POST /api/invites`` takes; any other key is refused by name (``pid`` included:
the server picks a new person's id)."""


async def mint_invite(request: Request) -> Response:
    """Moderators mint invites over HTTP: ``Authorization: Bearer <their own token>``.

    The body is checked key by key before anything is minted: an unknown key or a value of
    the wrong type is a 400 naming the key, never a 500.
    """
    node = node_of(request)
    claims = moderator(request, "mint invites")
    try:
        body: Any = await request.json()
    except (ValueError, RecursionError):
        raise BadArgs("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadArgs("the body must be a JSON object")
    unknown = sorted(set(body) - set(INVITE_KEYS))
    if unknown:
        raise BadArgs(f"unknown key {unknown[0]!r} in the invite; one of {', '.join(INVITE_KEYS)}")
    room = body.pop("room", claims["room"])
    if not isinstance(room, str):
        raise BadArgs("'room' must be a string")
    if room != claims["room"]:
        # A moderator's token is bound to its room: the panel's chair mints no plenary invite.
        raise WrongRoom(f"your invite is for room {claims['room']!r}, not {room!r}")
    hub = await node.room(room)
    if hub is None:
        raise BadArgs(f"no room {room!r}")
    hours = body.pop("hours", 72)
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 < hours <= 24 * 60:
        raise BadArgs("'hours' must be a number of hours up to 60 days")
    for key in ("role", "name"):
        if key not in body:
            raise BadArgs(f"'{key}' is required")
    token, minted = node.invites.mint_claims(room=room, hours=float(hours), **body)
    if minted["role"] != OBSERVER and minted.get("org"):
        org = minted["org"]
        invites.check_representative(invites.representatives(hub.state, org), org, minted["name"])
    # Recorded in the room's log before the link is handed out: the chair's list holds
    # every invite that works, and the chair can revoke it.
    refused = await hub.record_invite(minted, by=claims["pid"])
    if refused is not None:
        raise Refused(refused["message"], code=refused["code"])
    return JSONResponse({"token": token, "link": node.link(token, room), "jti": minted["jti"]})


ROUTES: list[BaseRoute] = [
    Route("/", index),
    Route("/r/{room}", room_page),
    Route("/healthz", healthz),
    Route("/metrics", metrics),
    Route("/api/invites", mint_invite, methods=["POST"]),
    Route(PREFIX + "{name:path}", ASSETS.serve),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
]
