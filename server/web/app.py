"""The application: a node built from its features, behind Starlette.

:func:`features` is the node's feature list — the one place a feature is switched on
(docs/architecture.md, "How to add a feature"). :func:`create_app` builds the node from it,
collects every feature's routes and the node's own, maps every ``HemicycleError`` to its
HTTP answer in one exception handler, puts the security headers on every response, and
runs the node for the app's lifespan.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import WebSocketRoute
from starlette.types import ASGIApp

from .. import channels, polls, stage
from ..errors import HemicycleError
from ..media.recording import Recording
from ..media.room import MediaNode
from ..media.setup import MediaConfig
from ..media.speaker import ActiveSpeaker
from ..media.stagerec import StageRecording
from ..media.video import VideoNode
from ..media.vpeers import VideoConfig
from ..node.app import Node
from ..node.backends import Backends
from ..node.ballots import Ballots
from ..node.config import Assembly, Settings, load_assembly
from ..node.feature import Feature, SliceFeature
from ..node.reactions import Reactions
from . import pages
from .headers import SecurityHeaders
from .http import error_response
from .results import Results
from .socket import websocket_endpoint
from .transcripts import Transcripts


class _App(Starlette):
    """Starlette with :class:`SecurityHeaders` outside everything, its own 500 page too
    (user middleware would sit inside ``ServerErrorMiddleware``)."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack())


def features(settings: Settings, assembly: Assembly) -> list[Feature]:
    """The node's features, in start order (stopped in reverse)."""
    media = MediaConfig.from_extra(assembly.extra, assembly.source, settings.turn_secret)
    audio = MediaNode(
        media.with_loopback(settings.loopback_media).with_workers(settings.media_workers)
    )
    video = VideoNode(audio.config, VideoConfig.from_extra(assembly.extra, assembly.source))
    return [
        SliceFeature(channels.SLICE),  # language channels and booths
        SliceFeature(polls.SLICE),  # polls and votes
        audio,  # audio (with the audio slice)
        Recording(audio),  # after audio: it taps the audio rooms, and stops before them
        ActiveSpeaker(audio),  # after audio: it taps each room's floor
        SliceFeature(stage.SLICE),  # who is seen: the stage, the share, the pin
        video,
        StageRecording(audio, video),  # after video: it taps both, and stops before them
        Ballots(),  # secret ballots' frames and boxes
        Reactions(),
        Transcripts(),
        Results(),
    ]


def create_app(
    settings: Settings | None = None,
    assembly: Assembly | None = None,
    backends: Backends | None = None,
) -> Starlette:
    settings = settings or Settings.from_env()
    if not settings.secret:
        raise ValueError("no invite secret: set HEMICYCLE_SECRET (or use `hemicycle demo`)")
    assembly = assembly or load_assembly(settings.config)
    node = Node(settings, assembly, backends, features(settings, assembly))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with node:
            yield

    routes = [route for feature in node.features for route in feature.routes()]
    app = _App(
        routes=[*routes, WebSocketRoute("/ws", websocket_endpoint), *pages.ROUTES],
        exception_handlers={HemicycleError: error_response},
        # The API's JSON and the plain /static files (i18n) compressed; hashed static files
        # come compressed already (server/web/assets.py), audio never is.
        middleware=[Middleware(GZipMiddleware, minimum_size=1024, compresslevel=6)],
        lifespan=lifespan,
    )
    app.state.node = node
    return app
