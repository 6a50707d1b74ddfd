"""Accessibility of every role's page in every state of a meeting (tests/scenes.py): axe-core
with the WCAG 2.2 AA rules finds nothing, every input has a label, and on a phone (390×844)
nothing scrolls sideways and each role's primary actions are in the first screen."""

from __future__ import annotations

from typing import Any

import pytest

from server.node.auth import Invites

from .a11y import unlabelled_inputs, violations
from .conftest import NodeFactory
from .scenes import PHONE, STATES, open_room, to_state

pytestmark = pytest.mark.browser


# What each role must reach on a phone without scrolling (issue 11, "Phone"): listening,
# the hand or the microphone, the interpreter's air button. The chair's console is its own page.
FIRST_SCREEN = {
    "member": ["#listen-button", "#hand-button"],
    "observer": ["#listen-button"],
    "panelist": ["#listen-button", "#mic-button"],
    "interpreter": ["#air-release"],
}


async def below_first_screen(page: Any, selectors: list[str]) -> list[str]:
    """The selectors whose element is not visible, or ends below the first screen."""
    await page.evaluate("window.scrollTo(0, 0)")
    out: list[str] = await page.evaluate(
        """(sels) => sels.filter((s) => {
          const el = document.querySelector(s);
          if (!el || !el.getClientRects().length) return true;
          return el.getBoundingClientRect().bottom > window.innerHeight;
        })""",
        selectors,
    )
    return out


async def sideways(page: Any) -> int:
    """How far the page scrolls sideways (0: it fits its viewport)."""
    width: int = await page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    return width


@pytest.mark.timeout(600)
async def test_every_role_and_state_has_no_wcag_violation(
    start_node: NodeFactory, invites: Invites, browser: Any
) -> None:
    node = await start_node()
    found: dict[str, list[str]] = {}
    async with open_room(browser, node.url, invites) as room:
        for state in STATES:
            await to_state(room, state)
            for role, page in room.pages.items():
                seen = await violations(page)
                seen += [f"no label: {html}" for html in await unlabelled_inputs(page)]
                if seen:
                    found[f"{role} / {state}"] = seen
        # The same pages on a phone: the results state, nothing sideways, axe again.
        for role, page in room.pages.items():
            await page.set_viewport_size(PHONE)
            if await sideways(page) > 0:
                found.setdefault(f"{role} / phone", []).append(
                    f"scrolls sideways by {await sideways(page)} px"
                )
            seen = await violations(page)
            seen += [
                f"{sel} is not in the first screen"
                for sel in await below_first_screen(page, FIRST_SCREEN.get(role, []))
            ]
            if seen:
                found.setdefault(f"{role} / phone", []).extend(seen)
        assert room.errors == []
    assert not found, "\n".join(f"{k}:\n  " + "\n  ".join(v) for k, v in found.items())
