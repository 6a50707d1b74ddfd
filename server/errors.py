"""The one exception tree of hemicycle.

Every error a client can be told about carries a stable ``code`` that the wire sends
unchanged (see docs/protocol.md) and a human ``message``::

    HemicycleError
    ├── BadFrame            malformed JSON/msgpack, not an object, missing fields
    │   └── FrameTooLarge   over the 64 KiB frame limit
    ├── UnknownType         a message or command type the server does not know
    ├── BadArgs             a command's arguments are missing or of the wrong shape
    ├── AuthError           bad, tampered or expired invite token
    ├── Forbidden           the sender's role may not give this command
    ├── WrongRoom           a command addressed to another room
    ├── Refused             the command is well-formed and allowed, but the room's state
    │                       refuses it (hand already raised, vote closed, booth occupied …)
    ├── RateLimited         the sender is going faster than the room allows
    └── Unavailable         the backend did not take the command; retry with the same cid

Refusals raised by the pure reducers are ``Refused`` with a specific ``code`` such as
``hand_already_raised``; the reducers never raise anything else for a state conflict.
"""

from __future__ import annotations


class HemicycleError(Exception):
    """Base of every error that reaches a client."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_wire(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class BadFrame(HemicycleError):
    code = "bad_frame"


class FrameTooLarge(BadFrame):
    code = "frame_too_large"


class UnknownType(HemicycleError):
    code = "unknown_type"


class BadArgs(HemicycleError):
    code = "bad_args"


class AuthError(HemicycleError):
    code = "bad_token"


class Forbidden(HemicycleError):
    code = "forbidden"


class WrongRoom(HemicycleError):
    code = "wrong_room"


class Refused(HemicycleError):
    """The room's state refuses the command; ``code`` names the reason."""

    code = "refused"


class RateLimited(HemicycleError):
    code = "rate_limited"


class Unavailable(HemicycleError):
    code = "unavailable"


class ConfigError(Exception):
    """A configuration file or setting is wrong: names the file, the key and the problem."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        super().__init__(f"{source}: {key}: {problem}")
        self.source = source
        self.key = key
        self.problem = problem
