"""What routes and sockets share: finding the node, and who is calling.

HTTP routes that only moderators may call (invites, exports, recordings) take the
moderator's own invite token as ``Authorization: Bearer <token>``; they raise
``AuthError``/``Forbidden``/``WrongRoom`` like any ``HemicycleError``, and the app's one
exception handler (``server/web/http.py``) turns that into a JSON answer with a status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection

from ..errors import Forbidden
from ..types import MODERATOR

if TYPE_CHECKING:
    from .app import Node


def node_of(conn: HTTPConnection) -> Node:
    """The node serving a request or a WebSocket (``create_app`` puts it in the app state)."""
    node: Node = conn.app.state.node
    return node


def moderator(request: HTTPConnection, what: str) -> dict[str, Any]:
    """The caller's invite claims; ``AuthError``/``Forbidden`` unless a moderator's."""
    header = request.headers.get("authorization", "")
    claims = node_of(request).invites.verify(header.removeprefix("Bearer ").strip() or None)
    if claims["role"] != MODERATOR:
        raise Forbidden(f"only moderators may {what}")
    return claims
