"""The pages' JS appliers against the server: a replayed session ends with the server's view.

A scripted session (tests/page_session.py) makes the fold produce every event type. For each
role, the real room page (served by a node, loaded in Chromium) is given the person's view of
the session's initial state; every event that person may see goes through the page's own
appliers (``HC.applyEvents``, the function the WebSocket path uses), in log order; and after
each log entry the page's ``HC.state`` must equal ``fold.view(state, person)`` as JSON (the
last one: the final state's view). A new event type without a scripted step, without a JS
applier, or folded into another shape fails here; the page must also draw what it holds
without errors.

``meta`` is left out of the comparison: it is the node's bookkeeping (the last entry id, the
number of entries folded), which the page keeps as ``HC.last`` from the frames' ids.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest

from server import fold
from server.node.auth import Invites
from server.node.config import Assembly

from .conftest import NodeFactory, timeout
from .page_session import PEOPLE, ROOM, VIEWERS, Session, record

MISSING = "<missing>"
SHOW = 5
"""Differences shown per role, first first."""


@pytest.fixture(scope="module")
def session(assembly: Assembly) -> Session:
    return record(assembly.rooms[ROOM])


def test_the_session_produces_every_event_type(session: Session) -> None:
    missing = sorted(set(fold.RULES.apply) - session.event_types())
    assert not missing, f"no scripted step produces these event types: {', '.join(missing)}"


# --- comparing two JSON values --------------------------------------------------------------


Path = tuple[str | int | slice, ...]


def differences(page: Any, server: Any, path: Path = ()) -> Iterator[tuple[Path, Any, Any]]:
    """Where two JSON values differ, first first: the path to the key or item, both values."""
    if isinstance(page, dict) and isinstance(server, dict):
        for key in sorted(set(page) | set(server)):
            if key not in page or key not in server:
                yield (*path, key), page.get(key, MISSING), server.get(key, MISSING)
            else:
                yield from differences(page[key], server[key], (*path, key))
    elif isinstance(page, list) and isinstance(server, list):
        for i, (a, b) in enumerate(zip(page, server, strict=False)):
            yield from differences(a, b, (*path, i))
        if len(page) != len(server):
            yield (*path, slice(min(len(page), len(server)), None)), page, server
    elif type(page) is not type(server) or page != server:
        yield path, page, server


def show(path: Path) -> str:
    parts = []
    for p in path:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif isinstance(p, slice):
            parts.append(f"[{p.start}:]")
        else:
            parts.append(f".{p}")
    return "$" + "".join(parts)


def comparable(state: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps({k: v for k, v in state.items() if k != "meta"}))
    return out


# --- the replay -----------------------------------------------------------------------------

# Runs in the page: the person's initial view, then each log entry's events through the
# page's own appliers (one event at a time, so a throwing applier is named); a JSON copy of
# HC.state after each entry.
REPLAY = """({initial, steps}) => {
  HC.state = initial;
  const missing = [];
  const snapshots = [];
  for (let i = 0; i < steps.length; i++) {
    for (const ev of steps[i]) {
      try {
        for (const type of HC.applyEvents([ev])) missing.push({step: i, type});
      } catch (e) {
        return {error: {step: i, type: ev.type, message: String(e && e.stack || e)}};
      }
    }
    snapshots.push(JSON.stringify(HC.state));
  }
  return {missing, snapshots};
}"""


def describe(session: Session, i: int) -> str:
    step = session.steps[i]
    e = step.entry
    types = ", ".join(ev["type"] for ev in step.events) or "no events"
    return f"entry #{i} {e['cmd']} {json.dumps(e['args'])[:80]} by {e['actor']['pid']} ({types})"


async def replay(page: Any, session: Session, you: dict[str, Any]) -> list[str]:
    """Replay the session in ``page`` for ``you``; the problems found (none: the page agrees)."""
    # As the wire carries them: JSON, only what this person may receive.
    steps = json.loads(
        json.dumps([[e for e in s.events if fold.visible(e, you)] for s in session.steps])
    )
    initial = json.loads(json.dumps(fold.view(session.initial, you)))
    out = await page.evaluate(REPLAY, {"initial": initial, "steps": steps})
    if "error" in out:
        err = out["error"]
        return [
            f"the JS applier for {err['type']!r} threw at {describe(session, err['step'])}: "
            f"{err['message']}"
        ]
    problems = [
        f"no JS applier for event type {m['type']!r} (first at {describe(session, m['step'])})"
        for m in _first_per_type(out["missing"])
    ]
    # After every entry, not only the last: a page that is wrong for a while is wrong.
    for i, snapshot in enumerate(out["snapshots"]):
        got = comparable(json.loads(snapshot))
        want = comparable(fold.view(session.steps[i].state, you))
        found = list(itertools.islice(differences(got, want), SHOW))
        for path, page_value, server_value in found:
            problems.append(
                f"after {describe(session, i)}, the page's copy differs from the server's "
                f"view at {show(path)}:\n"
                f"    page:   {json.dumps(page_value)[:300]}\n"
                f"    server: {json.dumps(server_value)[:300]}"
            )
        if found:
            break
    return problems


def _first_per_type(missing: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for m in missing:
        seen.setdefault(m["type"], m)
    return list(seen.values())


async def open_page(browser: Any, url: str, errors: list[str]) -> Any:
    context = await browser.new_context()
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            errors.append(f"console.{msg.type}: {msg.text}")
            if msg.type in ("error", "warning")
            else None
        ),
    )
    await page.goto(url)
    # Connected and welcomed; then the socket is closed for good (HC.stop), so that nothing
    # but the replay touches HC.state from here on.
    await page.wait_for_function(
        "() => HC.connected && HC.state !== null", timeout=timeout(10) * 1000
    )
    await page.evaluate("HC.stop()")
    await page.wait_for_function("() => HC.status === 'left'", timeout=timeout(5) * 1000)
    return page


@pytest.mark.browser
async def test_pages_fold_the_session_like_the_server(
    start_node: NodeFactory, invites: Invites, browser: Any, session: Session
) -> None:
    node = await start_node()
    problems: dict[str, list[str]] = {}
    replayed: set[str] = set()
    for label, pid in VIEWERS.items():
        claims = dict(PEOPLE[pid])
        token = invites.mint(room=ROOM, pid=pid, **claims)
        errors: list[str] = []
        page = await open_page(browser, node.node.link(token, ROOM), errors)
        you = await page.evaluate("HC.you")
        assert you["pid"] == pid and you["role"] == claims["role"], you
        errors.clear()  # what the live connection logged is not the replay's business
        found = await replay(page, session, you)
        # The page must also draw what it folded, without errors.
        await page.evaluate("HC.render()")
        await page.evaluate("new Promise((r) => requestAnimationFrame(() => setTimeout(r, 50)))")
        found += [
            f"in the page during the replay: {e}"
            for e in errors
            if not e.startswith("console.warning: no applier")  # reported above, by type
        ]
        if found:
            problems[f"{label} ({pid})"] = found
        replayed |= {e["type"] for s in session.steps for e in s.events if fold.visible(e, you)}
        await page.context.close()
    assert not problems, "\n".join(
        f"{who}:\n  " + "\n  ".join(lines) for who, lines in problems.items()
    )
    # A sealed ballot's event goes to no one (nodes keep it until the reveal): no page
    # ever folds it, and no other event type may be kept from every page.
    events = [e for s in session.steps for e in s.events]
    nodes_only = {e["type"] for e in events if e.get("to") == []}
    assert nodes_only == {"ballot.deposited"}, nodes_only
    assert replayed == session.event_types() - nodes_only, (
        f"no replayed role sees {sorted(session.event_types() - nodes_only - replayed)}"
    )
