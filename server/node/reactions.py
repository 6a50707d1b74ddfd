"""Reactions: a participant's applause or emoji, shown for a moment on every page.

Ephemeral (over the bus, never in the log): ``{"type": "react", "emoji": "👏"}`` from a
client becomes ``{"type": "ephemeral", "kind": "reaction", "pid", "emoji"}`` on every page
of the room, on every node. Counted against the person's frame rate like every frame (sessions.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import BadArgs, Forbidden
from ..types import OBSERVER, arg_str
from .feature import Feature, FrameHandler

if TYPE_CHECKING:
    from .sessions import Session

REACTIONS = ("👏", "👍", "❤️", "😂", "😮", "🎉")


class Reactions(Feature):
    name = "reactions"

    def frames(self) -> Mapping[str, FrameHandler]:
        return {"react": self.react}

    async def react(self, session: Session, data: dict[str, Any]) -> None:
        if session.person["role"] == OBSERVER:
            raise Forbidden("an observer watches and listens; no reactions")
        emoji = arg_str(data, "emoji", max_len=16)
        if emoji not in REACTIONS:
            raise BadArgs(f"reactions are one of {' '.join(REACTIONS)}")
        await session.hub.publish(
            {"type": "ephemeral", "kind": "reaction", "pid": session.person["pid"], "emoji": emoji}
        )
