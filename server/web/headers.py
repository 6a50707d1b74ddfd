"""Security headers on every HTTP response: a small pure-ASGI middleware.

It wraps the whole application (pages, static files, the API, error answers, 404s, and a
refused WebSocket upgrade's HTTP answer), so no route can forget them. The values:

- ``Content-Security-Policy``: everything from the node itself (``default-src 'self'``),
  no inline script and no ``eval`` (the pages load only ``/static/*.js``), styles only from
  ``/static/*.css`` (the scripts set styles through the CSSOM, which the policy allows; no
  ``style=`` attribute in the HTML), images also from ``data:`` because both pages name an
  empty ``data:,`` icon so that browsers do not ask for ``/favicon.ico``; no plugins, no
  ``<base>``, forms only to the node, and no page may frame ours (``frame-ancestors
  'none'``: clickjacking a chair's buttons).
- ``Referrer-Policy: no-referrer``: a page's URL never leaves with a request.
- ``X-Content-Type-Options: nosniff``: a download is never run as a script.
- ``Permissions-Policy``: microphone and camera for the page's own origin only, nothing
  for frames; geolocation, payment and USB for no one.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
HEADERS: dict[str, str] = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Permissions-Policy": "microphone=(self), camera=(self), geolocation=(), payment=(), usb=()",
}
_STARTS = frozenset({"http.response.start", "websocket.http.response.start"})


class SecurityHeaders:
    """Adds :data:`HEADERS` to every response start (replacing any a route set)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] in _STARTS:
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
