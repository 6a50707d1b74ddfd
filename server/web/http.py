"""Errors as HTTP answers, in one place: the app's exception handler for ``HemicycleError``.

Any route may raise a :class:`~server.errors.HemicycleError`; the answer is a JSON body with
its stable ``code`` and ``message``, and a status: 401 bad token, 403 forbidden or another
room's data (``wrong_room``), 404 an unknown thing, 409 a poll not yet in the state asked
for, 400 anything else.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import AuthError, Forbidden, HemicycleError

NOT_FOUND = frozenset(
    {"unknown_room", "no_such_channel", "unknown_poll", "no_such_recording", "not_found"}
)


def status_of(exc: HemicycleError) -> int:
    if isinstance(exc, AuthError):
        return 401
    if isinstance(exc, Forbidden) or exc.code == "wrong_room":
        return 403
    if exc.code in NOT_FOUND:
        return 404
    if exc.code.startswith("poll_is_"):
        return 409
    return 400


async def error_response(request: Request, exc: Exception) -> Response:
    """Starlette exception handler: ``HemicycleError`` → its JSON answer."""
    assert isinstance(exc, HemicycleError)
    return JSONResponse(exc.to_wire(), status_of(exc))
