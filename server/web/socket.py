"""The WebSocket route: check the invite, find the room, run a session."""

from __future__ import annotations

import contextlib

from starlette.websockets import WebSocket

from ..errors import AuthError, HemicycleError, RateLimited, Unavailable, WrongRoom
from ..node.http import node_of
from ..node.sessions import (
    CLOSE_BAD_TOKEN,
    CLOSE_DRAINING,
    CLOSE_TOO_FAST,
    CLOSE_UNKNOWN_ROOM,
    Session,
    frame_of,
)
from ..protocol import SUBPROTOCOLS, Codec, codec_for


async def websocket_endpoint(ws: WebSocket) -> None:
    node = node_of(ws)
    offered = ws.scope.get("subprotocols") or []
    subprotocol = next((p for p in SUBPROTOCOLS if p in offered), None)
    await ws.accept(subprotocol=subprotocol)
    codec = codec_for(subprotocol)
    if node.draining:  # the page and the Python client reconnect (elsewhere) at once
        draining = Unavailable("node draining; reconnect", code="draining")
        await _refuse(ws, codec, draining, CLOSE_DRAINING)
        return
    # The peer's address as uvicorn gives it: behind a proxy it trusts
    # (--forwarded-allow-ips, 127.0.0.1 by default), the client X-Forwarded-For names.
    address = ws.client.host if ws.client else "?"
    if not node.addresses.take(address):
        node.metrics.bad_frames.labels("conn_rate").inc()
        refusal = RateLimited("too many new connections from this address; wait a moment")
        await _refuse(ws, codec, refusal, CLOSE_TOO_FAST)
        return
    try:
        claims = node.invites.verify(ws.query_params.get("token"))
    except AuthError as exc:
        node.metrics.bad_frames.labels(exc.code).inc()
        await _refuse(ws, codec, exc, CLOSE_BAD_TOKEN)
        return
    asked = ws.query_params.get("room")  # the pages name it for a proxy routing by room
    if asked is not None and asked != claims["room"]:
        mismatch = WrongRoom(f"this invite is for room {claims['room']!r}, not {asked!r}")
        await _refuse(ws, codec, mismatch, CLOSE_UNKNOWN_ROOM)
        return
    try:
        hub = await node.room(claims["room"])  # opened now if this node opens rooms on demand
    except HemicycleError as exc:  # its log or bus unreachable
        await _refuse(ws, codec, exc, CLOSE_DRAINING)
        return
    if hub is None:
        # Configured but served by other nodes (HEMICYCLE_ROOMS): the proxy sent it astray.
        room = claims["room"]
        why = (
            f"room {room!r} is served by other nodes, not this one"
            if room in node.assembly.rooms
            else f"there is no room {room!r} here"
        )
        await _refuse(
            ws,
            codec,
            WrongRoom(why, code="unknown_room"),
            CLOSE_UNKNOWN_ROOM,
        )
        return
    settings = node.settings
    session = Session(
        ws,
        hub,
        claims,
        codec,
        settings.command_rate,
        settings.command_burst,
        node.frames,
        strikes=settings.rate_strikes,
    )
    await session.run(ws.query_params.get("after"))


async def _refuse(ws: WebSocket, codec: Codec, exc: HemicycleError, close_code: int) -> None:
    with contextlib.suppress(Exception):
        await ws.send(frame_of({"type": "error", **exc.to_wire()}, codec))
        await ws.close(close_code, exc.message[:120])
