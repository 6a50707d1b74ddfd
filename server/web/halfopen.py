"""Half-open requests closed: uvicorn's HTTP protocol with a deadline on the request head.

uvicorn (0.54) arms ``timeout_keep_alive`` only after a response, between requests: a
client that connects and sends half a request line or half its headers (an upgrade that
never completes) holds the connection for as long as it likes — 300 such requests were
held for 60 s. ``ws_ping_interval``/``ws_ping_timeout`` start only once the upgrade is done,
and ``h11_max_incomplete_event_size`` bounds the size of a head, not its time.

:class:`HeadDeadline` closes the connection when a request's head (request line and
headers) is not complete within :data:`HEAD_TIMEOUT` seconds of the connection or of the
request's first byte. Once the head is in, uvicorn's own timeouts take over (the app, the
keep-alive, the WebSocket pings). Behind a proxy, the proxy's own header timeout (nginx:
``client_header_timeout 10s``) does the same before the request reaches the node.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_TIMEOUT = 10.0
"""Seconds a connection may take to send a complete request head."""


class HeadDeadline(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request head lingers."""

    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(HEAD_TIMEOUT, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.cycle is None or self.cycle.response_complete:  # no request in progress
            self.transport.close()


def uvicorn_options() -> dict[str, Any]:
    """What ``serve`` hands uvicorn for these limits (the tests start nodes with them)."""
    return {"http": HeadDeadline}
