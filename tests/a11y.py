"""axe-core in the page (the ``axe-playwright-python`` package): WCAG 2.2 AA checks.

``await violations(page)`` runs axe on the whole page with the WCAG 2.0/2.1/2.2 A and AA
rules and returns one readable line per violation (rule, impact, help, the first nodes), so
a failing test says what to fix. Pages hold no inline script (CSP): the package injects
axe through the DevTools protocol, which the page's policy does not govern.
"""

from __future__ import annotations

from typing import Any

from axe_playwright_python.async_playwright import Axe

TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
_axe = Axe()


async def violations(page: Any) -> list[str]:
    """WCAG 2.2 AA violations on ``page`` now, one line each (empty: none)."""
    results = await _axe.run(
        page, options={"runOnly": {"type": "tag", "values": TAGS}, "resultTypes": ["violations"]}
    )
    out = []
    for v in results.response["violations"]:
        nodes = "; ".join(f"{target(n)} ({summary(n)})" for n in v["nodes"][:3])
        out.append(f"{v['id']} ({v['impact']}): {v['help']} — {len(v['nodes'])} node(s): {nodes}")
    return out


def target(node: dict[str, Any]) -> str:
    first = node["target"][0]
    return " ".join(first) if isinstance(first, list) else " ".join(node["target"])


def summary(node: dict[str, Any]) -> str:
    lines = (node.get("failureSummary") or "").splitlines()
    return lines[-1].strip() if lines else ""


async def unlabelled_inputs(page: Any) -> list[str]:
    """Visible form controls without an accessible name (axe checks most; this is the
    suite's own, stricter list: every input, select and textarea, hidden ones excepted)."""
    found: list[str] = await page.evaluate(
        """() => [...document.querySelectorAll("input, select, textarea")]
          .filter((el) => el.type !== "hidden" && el.getClientRects().length)
          .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label")
                          && !el.getAttribute("aria-labelledby") && !el.title)
          .map((el) => el.outerHTML.slice(0, 120))"""
    )
    return found
