"""One room with every role's page open in Chromium, moved through the states of a meeting.

Shared by tests/test_a11y.py (axe on every role and state) and scripts/screenshots.py (the
pictures in docs/screenshots/), so the screenshots show exactly what the accessibility test
checked. Each page is a real page on a real node; the states are reached by the pages' own
commands (``HC.command``), as a person would by clicking:

- ``idle``: everyone has joined, a member listens to Spanish, a hand is raised;
- ``on_air``: the Spanish interpreter takes the air, the panelist has the floor;
- ``vote_open``: the chair opens the demo's formal secret vote; the member has voted;
- ``results``: the chair closes it and publishes the results.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from server.node.auth import Invites

ROOM = "plenary"
VOTE = "strategic-framework"
STATES = ("idle", "on_air", "vote_open", "results")
DESKTOP = {"width": 1440, "height": 900}
CONSOLE = {"width": 1366, "height": 768}  # the interpreter's console (issue 11)
PHONE = {"width": 390, "height": 844}

# role -> the invite's claims (names and members of the demo assembly)
ROLES: dict[str, dict[str, Any]] = {
    "member": {"role": "participant", "name": "Sokha Chan", "org": "aple-kh", "country": "KH"},
    "panelist": {"role": "panelist", "name": "Lucía Pérez", "org": "mais-do", "country": "DO"},
    "observer": {"role": "observer", "name": "Olga Petrova", "country": "UA"},
    "interpreter": {
        "role": "interpreter",
        "name": "Elena Ruiz",
        "booth": "es",
        "pair": ["en", "es"],
    },
    "chair": {"role": "moderator", "name": "Amina Diallo", "country": "SN"},
}


@dataclass
class Room:
    """The open pages, by role; ``errors`` collects uncaught page errors."""

    url: str
    pages: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    state: str = "idle"

    async def run(self, role: str, name: str, args: dict[str, Any] | None = None) -> Any:
        """A command from ``role``'s page, as its buttons send it; returns the reply."""
        return await self.pages[role].evaluate("([n, a]) => HC.command(n, a)", [name, args or {}])

    async def settle(self) -> None:
        """Every page connected, with no command unanswered, and its copy of the room quiet
        (the same last event id over three looks 0.2 s apart: a page is sent only the
        entries it may see, so ids differ between pages), then rendered."""
        for role, page in self.pages.items():
            seen: list[Any] = []
            deadline = asyncio.get_running_loop().time() + 20
            while len(seen) < 3 or len({repr(s) for s in seen[-3:]}) > 1:
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"{role}'s page did not settle: {seen[-3:]}")
                seen.append(await page.evaluate(QUIET))
                if not seen[-1][0]:
                    seen.clear()
                await asyncio.sleep(0.2)
            await page.evaluate("new Promise((r) => requestAnimationFrame(() => r()))")


QUIET = "[HC.connected && HC.waiting().length === 0, HC.last]"


@contextlib.asynccontextmanager
async def open_room(
    browser: Any, url: str, invites: Invites, *, phone: bool = False, lang: str = "en"
) -> AsyncIterator[Room]:
    """Every role's page, at desktop (or phone) size, in ``lang``."""
    room = Room(url)
    contexts = []
    try:
        for role, claims in ROLES.items():
            size = PHONE if phone else CONSOLE if role == "interpreter" else DESKTOP
            context = await browser.new_context(
                viewport=size,
                locale={"en": "en-GB", "es": "es-ES", "fr": "fr-FR", "ru": "ru-RU"}[lang],
                timezone_id="UTC",
                is_mobile=phone,
                has_touch=phone,
                device_scale_factor=1,
            )
            contexts.append(context)
            page = await context.new_page()
            page.on("pageerror", lambda e, r=role: room.errors.append(f"{r}: {e}"))
            page.on(
                "console",
                lambda m, r=role: m.type == "error" and room.errors.append(f"{r}: {m.text}"),
            )
            token = invites.mint(room=ROOM, lang=lang, **claims)
            await page.goto(f"{url}/r/{ROOM}#t={token}")
            await page.wait_for_function("() => window.HC && HC.state && HC.connected")
            room.pages[role] = page
        await room.settle()
        yield room
    finally:
        for context in contexts:
            await context.close()


async def to_state(room: Room, state: str) -> None:
    """Move the room forward to ``state`` (states only go forward: idle → … → results)."""
    order = STATES.index(state)
    if order >= 1 and STATES.index(room.state) < 1:
        await room.run("member", "channel.choose", {"lang": "es"})
        await room.run("observer", "channel.choose", {"lang": "fr"})
        await room.run("member", "hand.raise")
        await room.run("interpreter", "air.take")
        panelist = await room.pages["panelist"].evaluate("HC.you.pid")
        await room.run("panelist", "hand.raise")
        await room.run("chair", "floor.grant", {"pid": panelist})
    if order >= 2 and STATES.index(room.state) < 2:
        chair = room.pages["chair"]
        await chair.wait_for_function(
            f"() => (HC.state.polls.polls[{VOTE!r}] || {{}}).keys", timeout=20_000
        )
        await room.run("chair", "poll.open", {"poll": VOTE})
        member = room.pages["member"]
        card = member.locator(f"#poll-{VOTE} .ballot")
        await card.locator("input[value=yes]").check(timeout=20_000)
        await card.locator("button[type=submit]").click()
        await member.locator(f"[id='confirm-{VOTE}/aple-kh']").click()
        await card.locator(".receipt code").wait_for(timeout=20_000)
    if order >= 3 and STATES.index(room.state) < 3:
        await room.run("chair", "poll.close", {"poll": VOTE})
        await room.pages["chair"].wait_for_function(
            f"() => HC.state.polls.polls[{VOTE!r}].sealed", timeout=30_000
        )
        await room.run("chair", "poll.publish", {"poll": VOTE})
    room.state = state
    await room.settle()
