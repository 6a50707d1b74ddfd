"""The levels of a room's local microphones, a few times a second, for the VU meters.

Only for a kind that carries levels (:attr:`Kind.levels`). Each publisher's
:class:`~server.media.relay.LevelMeter` keeps the loudest level since the last tick; every
:data:`EVERY` seconds the room's moderators and interpreters (the chair's board, the booths'
consoles — not every listener) get one ephemeral ``levels`` message with them, and the
peaks start again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .signalling import Publisher

EVERY = 0.2
TO = ["role:moderator", "role:interpreter"]


def levels_of(publishers: Mapping[str, Publisher], on_air: Callable[[Publisher], bool]) -> Any:
    """``{pid: {source, db, on_air}}`` of the publishers with a meter; resets their peaks."""
    levels = {}
    for pub in publishers.values():
        if pub.meter is None:
            continue
        levels[pub.pid] = {"source": pub.target, "db": -pub.meter.peak, "on_air": on_air(pub)}
        pub.meter.peak = 127
    return levels


async def publish_levels(
    publishers: Mapping[str, Publisher],
    on_air: Callable[[Publisher], bool],
    publish: Callable[[dict[str, Any]], Awaitable[Any]],
) -> None:
    """Run until cancelled: publish the levels of ``publishers`` (read anew at each tick)."""
    while True:
        await asyncio.sleep(EVERY)
        if not publishers:
            continue
        levels = levels_of(publishers, on_air)
        if not levels:
            continue
        with contextlib.suppress(Exception):  # a bus hiccup costs one tick of the meters
            await publish({"type": "ephemeral", "kind": "levels", "levels": levels, "to": TO})
