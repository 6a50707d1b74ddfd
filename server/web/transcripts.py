"""Transcript export: one channel's captions as WebVTT or plain text, for moderators.

``GET /api/transcripts/{room}/{lang}?format=vtt|txt`` with ``Authorization: Bearer <a
moderator's invite token>``; ``lang`` is a channel or ``original`` (the floor).

The room state keeps only the last caption lines (for late joiners). The log is trimmed
behind the snapshots, and the accepted lines of the trimmed part are in the room's archive
(server/node/snapshots.py archives them before any trim). An export takes the archive's
lines up to the latest saved snapshot, then reads the log from that snapshot to what this
node has folded and folds it on a worker thread from the snapshot's state — the same
fold, so exactly the lines that were accepted, in log order, on any node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .. import fold
from ..channels import ORIGINAL
from ..errors import BadArgs, Refused
from ..node.feature import Feature
from ..node.http import moderator, node_of
from ..node.log import id_key
from ..protocol import unpack
from ..types import RoomConfig

if TYPE_CHECKING:
    from ..node.hub import RoomHub

Line = dict[str, Any]
CUE_MS = 4_000
"""How long a cue stays up when the next line does not end it sooner."""


async def transcript_lines(hub: RoomHub, lang: str) -> list[Line]:
    """Every accepted caption line of ``lang`` in ``hub``'s room, oldest first."""
    last = hub.state["meta"]["last"]
    if last is None:
        return []
    stop = id_key(last)
    store = hub.backends.log
    snap = await store.load_snapshot(hub.room)  # (saved by a node ahead of this one: its
    # archived lines go a little further than this node has folded, which does no harm)
    lines: list[Line] = []
    after = None
    if snap is not None:
        after = snap[0]
        for entry_id, data in await store.read_archive(hub.room):
            if id_key(entry_id) > id_key(after):
                break
            lines.extend(_caption_lines(unpack(data).get("captions", []), lang))
    entries: list[tuple[str, bytes]] = []
    if after is None or id_key(after) < stop:
        tail = store.tail(hub.room, after)
        try:
            async for entry_id, raw in tail:
                entries.append((entry_id, raw))
                if id_key(entry_id) >= stop:
                    break
        finally:
            close = getattr(tail, "aclose", None)  # async generators: end the XREAD loop now
            if close is not None:
                await close()
    base = snap[1] if snap is not None else None
    return lines + await asyncio.to_thread(_replay, hub.rules, hub.config, base, entries, lang)


def _caption_lines(events: list[Any], lang: str) -> list[Line]:
    return [
        {"ts": e["ts"], "text": e["text"], "pid": e["pid"]}
        for e in events
        if e.get("type") == "caption" and e.get("lang") == lang
    ]


def _replay(
    rules: fold.Rules,
    config: RoomConfig,
    base: bytes | None,
    entries: list[tuple[str, bytes]],
    lang: str,
) -> list[Line]:
    state = fold.from_snapshot(unpack(base)) if base is not None else rules.new_state(config)
    lines: list[Line] = []
    for entry_id, raw in entries:
        lines.extend(_caption_lines(rules.fold(state, entry_id, unpack(raw)).events, lang))
    return lines


def _clock(ms: int) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_webvtt(lines: list[Line], title: str) -> str:
    """WebVTT (W3C): cue times from the first line; each cue ends when the next begins."""
    out = ["WEBVTT - " + title.replace("-->", "→").replace("\n", " "), ""]
    if lines:
        start = lines[0]["ts"]
        out += ["NOTE", f"00:00:00.000 is {_utc(start)} (UTC).", ""]
        for i, line in enumerate(lines):
            begin = line["ts"] - start
            end = begin + CUE_MS
            if i + 1 < len(lines):
                end = min(end, max(begin + 1, lines[i + 1]["ts"] - start))
            text = line["text"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            out += [str(i + 1), f"{_clock(begin)} --> {_clock(end)}", text, ""]
    return "\n".join(out)


def to_text(lines: list[Line]) -> str:
    return "".join(f"{_utc(line['ts'])}  {line['text']}\n" for line in lines)


async def transcript(request: Request) -> Response:
    room, lang = request.path_params["room"], request.path_params["lang"]
    moderator(request, "export transcripts", room)
    hub = await node_of(request).room(room)
    if hub is None:
        raise Refused(f"no room {room!r}", code="unknown_room")
    if lang != ORIGINAL and lang not in hub.state["channels"]["channels"]:
        raise Refused(f"room {room!r} has no {lang!r} channel", code="no_such_channel")
    kind = request.query_params.get("format", "vtt")
    if kind not in ("vtt", "txt"):
        raise BadArgs("'format' is vtt or txt")
    lines = await transcript_lines(hub, lang)
    name = f"{room}-{lang}.{kind}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}
    if kind == "vtt":
        title = f"{hub.config.title}, {lang}"
        return Response(to_webvtt(lines, title), media_type="text/vtt", headers=headers)
    return Response(to_text(lines), media_type="text/plain", headers=headers)


ROUTES = [Route("/api/transcripts/{room}/{lang}", transcript, methods=["GET"])]


class Transcripts(Feature):
    """Transcript exports (WebVTT, text) for the chair."""

    name = "transcripts"

    def routes(self) -> Sequence[BaseRoute]:
        return ROUTES
