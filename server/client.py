"""An asyncio client for tests, benchmarks and bots.

It keeps a copy of the room state the same way a browser does: the welcome's snapshot,
then each ``events`` frame applied with the server's own reducers. ::

    async with await Client.connect(base_url, token) as c:
        await c.command("hand.raise")
        await c.wait_for(lambda s: c.me in s["core"]["hands"])
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from collections.abc import Callable, Sequence
from typing import Any, cast

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from . import fold
from .protocol import JSON, MSGPACK, Codec, decode, encode
from .types import State

DRAINING = 4010
"""The node is draining: reconnect at once (to another node) and resume (docs/protocol.md)."""


class CommandError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Client:
    def __init__(self, ws: ClientConnection, codec: Codec, url: str, token: str) -> None:
        self.ws = ws
        self.codec: Codec = codec
        self.url, self.token = url, token
        self.state: State = cast(State, {})  # the welcome brings it
        self.last: str | None = None
        self.you: dict[str, Any] = {}
        self.welcome: dict[str, Any] = {}
        self.received: list[dict[str, Any]] = []
        """Every frame after the welcome, in arrival order (tests read it)."""
        self.errors: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.close_reason: str = ""
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._unanswered: dict[str, dict[str, Any]] = {}
        """Commands sent and not answered, by cid: sent again after a move (a drain)."""
        self._changed = asyncio.Condition()
        self._cids = itertools.count(1)
        self._prefix = secrets.token_hex(4)
        self._reader: asyncio.Task[None] | None = None
        self.urls: list[str] = [url]
        """Nodes to reconnect to when one drains (a load balancer's list), tried in turn."""
        self.moves = 0
        """Times this client moved to another node because its node drained."""
        self.moving: asyncio.Task[None] | None = None
        """The reconnect under way after a drain close (``await`` it to know it is done)."""
        self._closed = False

    @classmethod
    async def connect(
        cls,
        base_url: str,
        token: str,
        *,
        codec: Codec = "msgpack",
        after: str | None = None,
        elsewhere: Sequence[str] = (),
        **kwargs: Any,
    ) -> Client:
        """Open a connection and wait for the welcome (``after``: resume from that id).

        On a drain close (4010) the client reconnects at once, without backoff, to the
        next of ``base_url`` and ``elsewhere`` and resumes after its last event."""
        ws_url = base_url.replace("http", "ws", 1).rstrip("/") + "/ws?token=" + token
        if after:
            ws_url += "&after=" + after
        sub = MSGPACK if codec == "msgpack" else JSON
        ws = await connect(
            ws_url,
            subprotocols=[sub],  # type: ignore[list-item]
            max_size=None,
            open_timeout=10,
            **kwargs,
        )
        client = cls(ws, codec, base_url, token)
        client.urls.extend(elsewhere)
        await client._hello()
        return client

    async def _hello(self) -> None:
        first = decode(await self.ws.recv(), self.codec, limit=None)
        if first["type"] == "error":
            await self.ws.close()
            raise CommandError(first["code"], first["message"])
        self.welcome = first
        self.you = first["you"]
        if not first.get("resumed"):
            self.state = first["state"]
        self.last = first["last"]
        self.close_code, self.close_reason = None, ""  # a refused attempt keeps the last
        self._reader = asyncio.create_task(self._read())

    async def _move(self) -> None:
        """The node drains: reconnect at once to the next node of ``urls`` and resume."""
        for attempt in range(3 * len(self.urls)):
            self.url = self.urls[(self.urls.index(self.url) + 1) % len(self.urls)]
            try:
                await self.resume()
            except Exception:  # that node drains or is down too: the next one
                await asyncio.sleep(0.05 * attempt)
                continue
            self.moves += 1
            for message in list(self._unanswered.values()):  # same cid: folded once
                await self.send(message)
            return
        self._fail_replies()
        raise ConnectionError("no node took the connection after a drain")

    def _fail_replies(self) -> None:
        self._unanswered.clear()
        for fut in self._replies.values():
            if not fut.done():
                fut.set_exception(ConnectionError("connection closed"))

    async def resume(self, **kwargs: Any) -> bool:
        """Reconnect after a drop and ask for exactly what was missed since ``last``.

        Returns True when the server resumed (the state was kept and the missed events
        follow), False when it sent a fresh snapshot instead.
        """
        with contextlib.suppress(Exception):
            await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        ws_url = self.url.replace("http", "ws", 1).rstrip("/") + "/ws?token=" + self.token
        if self.last:
            ws_url += "&after=" + self.last
        sub = MSGPACK if self.codec == "msgpack" else JSON
        self.ws = await connect(
            ws_url,
            subprotocols=[sub],  # type: ignore[list-item]
            max_size=None,
            open_timeout=10,
            **kwargs,
        )
        await self._hello()
        return bool(self.welcome.get("resumed"))

    @property
    def me(self) -> str:
        pid: str = self.you["pid"]
        return pid

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                message = decode(frame, self.codec, limit=None)
                self._on(message)
        except Exception:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.close_reason = self.ws.close_reason or ""
            if self.close_code == DRAINING and not self._closed:
                # Commands wait for their replies from the next node; other requests fail.
                for cid, fut in self._replies.items():
                    if cid not in self._unanswered and not fut.done():
                        fut.set_exception(ConnectionError("connection closed"))
                self.moving = asyncio.get_running_loop().create_task(self._move())
            else:
                self._fail_replies()
            async with self._changed:
                self._changed.notify_all()

    def _on(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        self.received.append(message)
        if kind == "events":
            fold.apply_events(self.state, message["events"])
            self.last = message["id"]
        elif kind == "reply":
            self._unanswered.pop(message["cid"], None)
            fut = self._replies.pop(message["cid"], None)
            if fut is not None and not fut.done():
                fut.set_result(message)
        elif kind == "error":
            self.errors.append(message)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def next_cid(self) -> str:
        return f"{self._prefix}-{next(self._cids)}"

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(encode(message, self.codec))

    async def request(
        self,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        cid: str | None = None,
        timeout: float = 10.0,
        **extra: Any,
    ) -> dict[str, Any]:
        """Send a command and return its reply, ok or not."""
        cid = cid or self.next_cid()
        fut = self._replies.get(cid)
        if fut is None:
            fut = self._replies[cid] = asyncio.get_running_loop().create_future()
        message = {"type": "command", "cid": cid, "name": name, "args": args or {}, **extra}
        self._unanswered[cid] = message
        try:
            try:
                await self.send(message)
            except ConnectionClosed:
                if self.moving is None or self.moving.done():
                    raise  # else the move sends it again, on the next node
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._unanswered.pop(cid, None)

    async def rpc(self, kind: str, *, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Send a non-command request (``rtc.offer``, ``rtc.close`` …) and return its reply."""
        cid = self.next_cid()
        fut = self._replies[cid] = asyncio.get_running_loop().create_future()
        await self.send({"type": kind, "cid": cid, **fields})
        return await asyncio.wait_for(fut, timeout)

    async def command(
        self, name: str, args: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        """Send a command; raise :class:`CommandError` unless it was accepted."""
        reply = await self.request(name, args, **kw)
        if not reply["ok"]:
            raise CommandError(reply["code"], reply["message"])
        return reply

    async def wait_for(self, predicate: Callable[[State], Any], timeout: float = 5.0) -> Any:
        """Wait until ``predicate(state)`` is truthy; return its value."""

        async def wait() -> Any:
            async with self._changed:
                while True:
                    value = predicate(self.state)
                    if value:
                        return value
                    if self._reader is not None and self._reader.done():
                        raise ConnectionError("connection closed while waiting")
                    await self._changed.wait()

        return await asyncio.wait_for(wait(), timeout)

    async def wait_message(
        self, predicate: Callable[[dict[str, Any]], Any], timeout: float = 5.0
    ) -> dict[str, Any]:
        """Wait for a received frame matching ``predicate`` (earlier frames count too)."""

        async def wait() -> dict[str, Any]:
            async with self._changed:
                while True:
                    for m in self.received:
                        if predicate(m):
                            return m
                    if self._reader is not None and self._reader.done():
                        raise ConnectionError("connection closed while waiting")
                    await self._changed.wait()

        return await asyncio.wait_for(wait(), timeout)

    async def close(self) -> None:
        self._closed = True
        if self.moving is not None and not self.moving.done():
            self.moving.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.moving
        await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
