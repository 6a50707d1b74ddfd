"""What the HTTP routes share: moderator authentication and errors as JSON.

Routes that only moderators may call (invites, exports, recordings) take the moderator's
own invite token as ``Authorization: Bearer <token>``. A route wrapped in :func:`api` may
raise any :class:`~server.errors.HemicycleError`; it becomes a JSON body with the stable
code, and a status: 401 bad token, 403 forbidden, 404 unknown thing, 400 anything else.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import AuthError, Forbidden, HemicycleError
from ..types import MODERATOR

if TYPE_CHECKING:
    from ..node.app import Node

NOT_FOUND = frozenset({"unknown_room", "no_such_channel", "unknown_poll", "no_such_recording"})

Handler = Callable[[Request], Awaitable[Response]]


def node_of(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


def moderator(request: Request, what: str) -> dict[str, Any]:
    """The caller's invite claims; ``AuthError``/``Forbidden`` unless a moderator's."""
    header = request.headers.get("authorization", "")
    claims = node_of(request).invites.verify(header.removeprefix("Bearer ").strip() or None)
    if claims["role"] != MODERATOR:
        raise Forbidden(f"only moderators may {what}")
    return claims


def error_response(exc: HemicycleError) -> JSONResponse:
    status = (
        401
        if isinstance(exc, AuthError)
        else 403
        if isinstance(exc, Forbidden)
        else 404
        if exc.code in NOT_FOUND
        else 400
    )
    return JSONResponse(exc.to_wire(), status)


def api(handler: Handler) -> Handler:
    """Turn a route's ``HemicycleError`` into its JSON answer."""

    @functools.wraps(handler)
    async def route(request: Request) -> Response:
        try:
            return await handler(request)
        except HemicycleError as exc:
            return error_response(exc)

    return route
