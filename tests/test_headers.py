"""Security headers on every response (server/web/headers.py), and the CSP watch itself."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from server.node.auth import Invites
from server.web.headers import CSP, HEADERS

from .conftest import NodeFactory, timeout

FILL = {"room": "plenary", "lang": "en", "poll": "p1", "fmt": "json", "rec": "r1", "name": "x"}


def check(response: httpx.Response) -> None:
    where = f"{response.request.method} {response.request.url.path} → {response.status_code}"
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, f"{where}: {name}"


def test_the_policy_says_what_the_issue_asks() -> None:
    parts = {p.split()[0]: p.split()[1:] for p in CSP.split("; ")}
    assert parts["default-src"] == ["'self'"] and parts["frame-ancestors"] == ["'none'"]
    assert parts["script-src"] == ["'self'"] and parts["style-src"] == ["'self'"]
    assert not any("unsafe" in v for values in parts.values() for v in values)
    assert "microphone=(self)" in HEADERS["Permissions-Policy"]
    assert "camera=(self)" in HEADERS["Permissions-Policy"]


async def test_every_route_pages_api_errors_and_404s_carry_the_headers(
    start_node: NodeFactory, invites: Invites
) -> None:
    node = await start_node()

    async def boom(request: Request) -> Response:
        raise RuntimeError("an unexpected failure, on purpose")

    node.app.router.routes.append(Route("/boom", boom))
    chair = {"Authorization": "Bearer " + invites.mint(room="plenary", role="moderator", name="C")}
    async with httpx.AsyncClient(base_url=node.url, timeout=timeout(10)) as http:
        seen = 0
        for route in node.app.routes:  # every route the app has, each method, with and without
            if isinstance(route, Mount):
                paths = ["/static/hc.js", "/static/style.css", "/static/no-such.js"]
                methods = {"GET"}
            elif isinstance(route, Route):
                paths = [route.path_format.format(**FILL)]
                methods = (route.methods or {"GET"}) - {"HEAD"}
            else:
                continue  # the WebSocket route: no HTTP response of its own
            for path in paths:
                for method in methods:
                    for headers in ({}, chair):
                        check(await http.request(method, path, headers=headers))
                        seen += 1
        assert seen >= 20
        statuses = set()
        for method, path in [
            ("GET", "/"),
            ("GET", "/r/plenary"),
            ("GET", "/r/attic"),
            ("GET", "/no/such/page"),
            ("DELETE", "/api/invites"),
            ("POST", "/api/invites"),
            ("GET", "/boom"),
        ]:
            response = await http.request(method, path)
            check(response)
            statuses.add(response.status_code)
        assert {200, 401, 404, 405, 500} <= statuses


async def test_the_csp_watch_catches_an_inline_script(
    start_node: NodeFactory, invites: Invites, browser: Any
) -> None:
    """The browser fixture fails a test on any CSP violation; here one is made on purpose."""
    node = await start_node()
    context = await browser.new_context()
    for page in (await browser.new_page(), await context.new_page()):
        await page.goto(node.url + "/")
        await page.evaluate(
            """() => { const s = document.createElement("script");
                       s.textContent = "window.ran = true"; document.body.append(s); }"""
        )
        await page.wait_for_timeout(300)
        assert await page.evaluate("window.ran === undefined")  # the policy held
        violations = browser.take_violations()
        assert violations and "script-src" in " ".join(violations), violations


STATIC = Path(__file__).resolve().parent.parent / "static"
HTML_BAD = {
    "an inline script": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I),
    "an on*= attribute": re.compile(r"<[^>]*\son[a-z]+\s*=", re.I),
    "a style= attribute": re.compile(r"<[^>]*\sstyle\s*=", re.I),
    "a javascript: URL": re.compile(r"javascript:", re.I),
}
JS_BAD = {
    "a style attribute": re.compile(r"""setAttribute\(\s*["']style|[{,]\s*["']?style["']?\s*:"""),
    "a javascript: URL": re.compile(r"javascript:", re.I),
    "markup with a handler": re.compile(r"""<[a-z][^>]*\son[a-z]+\s*=""", re.I),
    "eval": re.compile(r"\beval\(|new Function\(|setTimeout\(\s*[\"'`]"),
}


@pytest.mark.parametrize("path", sorted(STATIC.glob("*.html")) + sorted(STATIC.glob("*.js")))
def test_the_pages_need_nothing_the_policy_forbids(path: Path) -> None:
    """What the browser tests may not reach: the whole of every page and script."""
    text = path.read_text(encoding="utf-8")
    for what, pattern in (HTML_BAD if path.suffix == ".html" else JS_BAD).items():
        found = pattern.search(text)
        assert found is None, f"{path.name}: {what}: {found.group(0) if found else ''}"
