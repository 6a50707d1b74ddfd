"""The authorization matrix: every command and every HTTP route × every role × own room /
other room, against a real node (memory backend) over real WebSockets and HTTP.

The expected outcome is written once per command (the roles that may give it) and once per
route (who may call it, and what their own room's request answers). The tables are checked
against the node's command table (``node.rules.commands``, the fold's) and the app's route
table (``app.routes``): a command or route without a rule here fails the test, as does a
rule for something that no longer exists.

A command from a role not in its set is ``forbidden``; from a role in it, anything but
``forbidden`` (the state may still refuse it). A command addressed to another room is
``wrong_room`` for everyone, before anything else is looked at.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Mount, WebSocketRoute

from server.client import Client
from server.node.auth import Invites
from server.types import (
    CAPTIONER,
    INTERPRETER,
    MODERATOR,
    OBSERVER,
    PANELIST,
    PARTICIPANT,
    ROLES,
)
from server.web.pages import ASSETS

from .conftest import NodeFactory

HASHED_JS = "/static/h/" + ASSETS.names["room.js"]

OWN, OTHER = "plenary", "panel"

NODE_ONLY: frozenset[str] = frozenset()
"""Given by nodes only (``system``): no client role may."""
CHAIR = frozenset({MODERATOR})
BOOTH = frozenset({INTERPRETER})
VOTERS = frozenset({PARTICIPANT, PANELIST})
PROXIES = frozenset({PARTICIPANT, PANELIST, MODERATOR})
ACTIVE = frozenset(ROLES) - {OBSERVER}

COMMANDS: dict[str, frozenset[str]] = {
    # the node's own
    "tick": NODE_ONLY,
    "join": NODE_ONLY,
    "leave": NODE_ONLY,
    # the room (rooms.py)
    "hand.raise": frozenset({PARTICIPANT, PANELIST, MODERATOR}),
    "hand.lower": ACTIVE,
    "floor.grant": CHAIR,
    "floor.revoke": ACTIVE,
    "agenda.goto": CHAIR,
    "agenda.next": CHAIR,
    "notice.post": CHAIR,
    # channels and booths (channels.py)
    "channel.choose": frozenset(ROLES),
    "channel.add": CHAIR,
    "air.take": BOOTH,
    "air.release": BOOTH,
    "booth.clear": CHAIR,
    "handover.request": BOOTH,
    "handover.offer": BOOTH,
    "handover.accept": BOOTH,
    "handover.decline": BOOTH,
    "handover.cancel": BOOTH,
    "booth.input": BOOTH,
    "booth.output": BOOTH,
    "booth.cough": BOOTH,
    "booth.signal": BOOTH,
    "chat.post": frozenset({INTERPRETER, MODERATOR}),
    "caption.post": frozenset({INTERPRETER, CAPTIONER}),
    # polls (polls.py)
    "poll.create": CHAIR,
    "poll.update": CHAIR,
    "poll.delete": CHAIR,
    "poll.open": CHAIR,
    "poll.timer": CHAIR,
    "poll.close": CHAIR,
    "poll.publish": CHAIR,
    "poll.keys": NODE_ONLY,
    "proxy.grant": PROXIES,
    "proxy.revoke": PROXIES,
    "ballot.cast": VOTERS,
    "ballot.claim": VOTERS,
    "ballot.deposit": NODE_ONLY,
    "ballot.reveal": NODE_ONLY,
    # audio (audio.py)
    "audio.mute": CHAIR,
    "audio.unmute": CHAIR,
    "recording.start": CHAIR,
    "recording.stop": CHAIR,
    # the stage (stage.py)
    "stage.add": CHAIR,
    "stage.remove": CHAIR,
    "stage.layout": CHAIR,
    "stage.pin": CHAIR,
    "share.start": frozenset({PARTICIPANT, PANELIST, MODERATOR}),
    "share.stop": frozenset({PARTICIPANT, PANELIST, MODERATOR}),
    # invites (invites.py)
    "invite.record": NODE_ONLY,
    "invite.revoke": CHAIR,
    "member.represent": CHAIR,
}

PUBLIC = "anyone"
MODERATORS = "moderators"

# path template → (method, who, own-room URL, other-room URL, the own-room moderator's status,
# body for a POST). ``{room}`` in the URLs is filled in with the room.
ROUTES: dict[str, tuple[str, str, str, str, int, dict[str, Any] | None]] = {
    "/": ("GET", PUBLIC, "/", "/", 200, None),
    "/r/{room}": ("GET", PUBLIC, "/r/plenary", "/r/panel", 200, None),
    "/healthz": ("GET", PUBLIC, "/healthz", "/healthz", 200, None),
    "/metrics": ("GET", PUBLIC, "/metrics", "/metrics", 200, None),
    "/static": ("GET", PUBLIC, "/static/room.js", "/static/room.js", 200, None),
    "/static/h/{name:path}": ("GET", PUBLIC, HASHED_JS, HASHED_JS, 200, None),
    "/api/invites": (
        "POST",
        MODERATORS,
        "/api/invites",
        "/api/invites",
        200,
        {"role": "participant", "name": "Guest", "room": "{room}"},
    ),
    "/api/transcripts/{room}/{lang}": (
        "GET",
        MODERATORS,
        "/api/transcripts/plenary/original",
        "/api/transcripts/panel/original",
        200,
        None,
    ),
    "/api/rooms/{room}/polls/{poll}/result.{fmt:str}": (
        "GET",
        MODERATORS,
        "/api/rooms/plenary/polls/strategic-framework/result.json",
        "/api/rooms/panel/polls/panel-focus/result.json",
        409,  # a draft poll: no result yet, but the moderator got past the checks
        None,
    ),
    "/api/attendance.{fmt:str}": (
        "GET",
        MODERATORS,
        "/api/attendance.json?room=plenary",
        "/api/attendance.json?room=panel",
        200,
        None,
    ),
    "/api/recordings": (
        "GET",
        MODERATORS,
        "/api/recordings?room=plenary",
        "/api/recordings?room=panel",
        200,
        None,
    ),
    "/api/recordings/{room}/{rec}/{name}": (
        "GET",
        MODERATORS,
        "/api/recordings/plenary/1/floor.ogg",
        "/api/recordings/panel/1/floor.ogg",
        404,  # no such recording: past the checks
        None,
    ),
}
SOCKETS = {"/ws"}
"""WebSocket routes: their frames are the commands above."""


def claims_for(role: str) -> dict[str, Any]:
    if role == INTERPRETER:
        return {"booth": "es", "pair": ["en", "es"]}
    if role in (PARTICIPANT, PANELIST):
        return {"org": "aple-kh"}
    return {}


NAMES = {PARTICIPANT: "Sokha Chan", PANELIST: "Dara Keo"}


async def test_every_command_by_every_role_in_own_and_other_room(
    start_node: NodeFactory, invites: Invites, tmp_path: Path
) -> None:
    node = await start_node(
        settings={"command_rate": 10_000.0, "command_burst": 10_000.0, "recordings": str(tmp_path)}
    )
    commands = node.node.rules.commands
    assert set(COMMANDS) == set(commands), (
        f"commands without a rule: {sorted(set(commands) - set(COMMANDS))}; "
        f"rules for no command: {sorted(set(COMMANDS) - set(commands))}"
    )
    clients = {
        role: await Client.connect(
            node.url,
            invites.mint(room=OWN, role=role, name=NAMES.get(role, role), **claims_for(role)),
        )
        for role in ROLES
    }
    wrong: list[str] = []
    try:
        for name, allowed in COMMANDS.items():
            for role, client in clients.items():
                own = await client.request(name, {}, room=OWN)
                got = own.get("code", "ok")
                if (got == "forbidden") == (role in allowed):
                    wrong.append(f"{name} by a {role} in their own room: {got}")
                other = await client.request(name, {}, room=OTHER)
                if other.get("code") != "wrong_room":
                    wrong.append(f"{name} by a {role} for another room: {other.get('code')}")
    finally:
        for client in clients.values():
            await client.close()
    assert not wrong, "\n".join(wrong)


def route_paths(app: Any) -> set[str]:
    return {route.path for route in app.routes}


async def test_every_route_by_every_role_in_own_and_other_room(
    start_node: NodeFactory, invites: Invites, tmp_path: Path
) -> None:
    node = await start_node(settings={"recordings": str(tmp_path)})
    paths = {r.path for r in node.app.routes if not isinstance(r, WebSocketRoute)}
    sockets = {r.path for r in node.app.routes if isinstance(r, WebSocketRoute)}
    assert sockets == SOCKETS
    assert paths == set(ROUTES), (
        f"routes without a rule: {sorted(paths - set(ROUTES))}; "
        f"rules for no route: {sorted(set(ROUTES) - paths)}"
    )
    assert any(isinstance(r, Mount) and r.path == "/static" for r in node.app.routes)
    tokens = {
        role: invites.mint(room=OWN, role=role, name=NAMES.get(role, role), **claims_for(role))
        for role in ROLES
    }
    wrong: list[str] = []
    async with httpx.AsyncClient(base_url=node.url) as http:

        async def call(method: str, url: str, body: Any, token: str | None) -> httpx.Response:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return await http.request(method, url, json=body, headers=headers)

        for path, (method, who, own_url, other_url, own_status, body) in ROUTES.items():
            for room, url in ((OWN, own_url), (OTHER, other_url)):
                filled = (
                    {
                        k: (v.replace("{room}", room) if isinstance(v, str) else v)
                        for k, v in body.items()
                    }
                    if body
                    else None
                )
                anonymous = await call(method, url, filled, None)
                want = 200 if who == PUBLIC else 401
                if anonymous.status_code != want:
                    wrong.append(f"{path} ({room}) with no token: {anonymous.status_code}")
                for role, token in tokens.items():
                    r = await call(method, url, filled, token)
                    if who == PUBLIC:
                        want, code = 200, None
                    elif role != MODERATOR:
                        want, code = 403, "forbidden"
                    elif room == OWN:
                        want, code = own_status, None
                    else:
                        want, code = 403, "wrong_room"
                    got_code = r.json().get("code") if code else None
                    if r.status_code != want or got_code != code:
                        wrong.append(
                            f"{path} ({room}) by a {role}: {r.status_code} {r.text[:100]}, "
                            f"expected {want} {code or ''}"
                        )
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("role", ROLES)
def test_every_role_has_a_page_label(role: str) -> None:
    # The pages name every role in the four languages (static/i18n/*.json).
    i18n = Path(__file__).resolve().parents[1] / "static" / "i18n"
    for lang in ("en", "es", "fr", "ru"):
        words = json.loads((i18n / f"{lang}.json").read_text())
        assert words.get(f"role.{role}"), (role, lang)
