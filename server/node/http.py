"""What routes and sockets share: finding the node, and who is calling.

HTTP routes that only moderators may call (invites, exports, recordings) take the
moderator's own invite token as ``Authorization: Bearer <token>``; they raise
``AuthError``/``Forbidden``/``WrongRoom`` like any ``HemicycleError``, and the app's one
exception handler (``server/web/http.py``) turns that into a JSON answer with a status.

A moderator's token is bound to its room: :func:`moderator` with ``room`` refuses another
room's data with ``WrongRoom`` (403 ``wrong_room``), whatever the route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection

from ..errors import Forbidden, WrongRoom
from ..types import MODERATOR

if TYPE_CHECKING:
    from .app import Node


def node_of(conn: HTTPConnection) -> Node:
    """The node serving a request or a WebSocket (``create_app`` puts it in the app state)."""
    node: Node = conn.app.state.node
    return node


def moderator(request: HTTPConnection, what: str, room: str | None = None) -> dict[str, Any]:
    """The caller's invite claims; ``AuthError``/``Forbidden`` unless a moderator's, and
    ``WrongRoom`` (403 ``wrong_room``) unless their invite is for ``room`` (when given).

    A revoked invite is refused like a bad one (the room's replica holds the revoked ids).
    """
    header = request.headers.get("authorization", "")
    node = node_of(request)
    claims = node.invites.verify(header.removeprefix("Bearer ").strip() or None)
    hub = node.hubs.get(claims["room"])
    if hub is not None:
        hub.refuse_revoked(claims)
    if claims["role"] != MODERATOR:
        raise Forbidden(f"only moderators may {what}")
    if room is not None and claims["room"] != room:
        raise WrongRoom(
            f"your invite is for room {claims['room']!r}: you may not {what} of room {room!r}"
        )
    return claims
