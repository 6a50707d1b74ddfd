"""The chair's count of listeners without audio: one ephemeral ``reach`` message per node.

Each node knows only its own connections (:meth:`Signalling.reach`), so every node sends
the room's moderators its own figures, tagged with its name, when they change and every
:data:`REFRESH` seconds while they are not zero; the chair's page adds up the latest figure
of each node and forgets a node silent for longer than three refreshes. Ephemeral, not an
event: a count that is stale within seconds has no place in the room log.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

EVERY = 1.0
REFRESH = 5.0
TO = ["role:moderator"]


async def publish_reach(
    node: str,
    figures: Callable[[], dict[str, int]],
    publish: Callable[[dict[str, Any]], Awaitable[Any]],
) -> None:
    """Run until cancelled: publish ``figures()`` of this node when they change."""
    last: dict[str, int] = {"listening": 0, "no_audio": 0}
    sent_at = 0.0
    while True:
        await asyncio.sleep(EVERY)
        now = figures()
        stale = any(now.values()) and time.monotonic() - sent_at > REFRESH
        if now == last and not stale:
            continue
        with contextlib.suppress(Exception):  # a bus hiccup: sent again at the next change
            await publish({"type": "ephemeral", "kind": "reach", "node": node, **now, "to": TO})
            last, sent_at = now, time.monotonic()
