"""Who may publish video on the stage. Pure. (A stand-in: the stage branch owns this module.)

The video path (server/media/video.py) asks only :func:`video_publishers` after each fold,
as audio asks ``audio.routes``. Here: the moderators and whoever has the floor may publish
their camera and share a screen.
"""

from __future__ import annotations

from . import rooms
from .types import State

CAMERA = "camera"
SCREEN = "screen"


def video_publishers(state: State) -> dict[str, frozenset[str]]:
    """pid → the sources that person may publish now (among ``camera``, ``screen``)."""
    both = frozenset({CAMERA, SCREEN})
    return {pid: both for pid in (*rooms.moderators(state), *rooms.speakers(state))}
