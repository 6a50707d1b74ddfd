"""Session output: frames sent at once from the fan-out loop keep their order when a socket
fills up and the rest waits in the queue (sessions.Session._send_now and _write)."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from server.client import Client
from server.node import sessions
from server.node.auth import Invites
from server.protocol import JSON

from .conftest import NodeFactory, timeout
from .waiting import eventually


def parse_frames(data: bytearray) -> list[bytes]:
    """Whole server frames (unmasked, unfragmented) at the start of ``data``; consumes them."""
    out, pos = [], 0
    while len(data) - pos >= 2:
        n, start = data[pos + 1] & 0x7F, pos + 2
        if n == 126:
            n, start = int.from_bytes(data[pos + 2 : pos + 4], "big"), pos + 4
        elif n == 127:
            n, start = int.from_bytes(data[pos + 2 : pos + 10], "big"), pos + 10
        if len(data) < start + n:
            break
        out.append(bytes(data[start : start + n]))
        pos = start + n
    del data[:pos]
    return out


async def test_a_reader_that_stalls_then_catches_up_gets_every_event_in_log_order(
    start_node: NodeFactory, invites: Invites, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessions, "MAX_QUEUE", 100_000)  # this test is about order, not 4008
    node = await start_node(settings={"command_rate": 1e6, "command_burst": 1e6})
    chair = await Client.connect(
        node.url, invites.mint(room="plenary", role="moderator", name="Chair")
    )
    fast = await Client.connect(
        node.url, invites.mint(room="plenary", role="participant", name="Fast")
    )
    # The stalling reader: a raw socket with a small receive buffer, reading paused.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", node.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=2**20)
    token = invites.mint(room="plenary", role="participant", name="Slow")
    writer.write(
        (
            f"GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {JSON}\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    writer.transport.pause_reading()
    hub = node.node.hubs["plenary"]
    await eventually(
        lambda: len(hub.sinks), until=lambda n: n >= 3, message="three connections in the room"
    )
    slow = next(s for s in hub.sinks if s.person["name"] == "Slow")
    # Small buffers on the server's side of that socket too, so it fills within a few
    # hundred frames (a slow link, without megabytes of kernel buffer in between).
    port = sock.getsockname()[1]
    proto = next(c for c in node.server.server_state.connections if c.client[1] == port)
    proto.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    proto.transport.set_write_buffer_limits(high=4096)

    # Post until the slow socket's buffers are full and frames wait (the slow path) …
    text = "n" * 480
    posted = 0
    waited = False
    started = time.monotonic()
    while posted < 3000 and time.monotonic() - started < timeout(20):
        await asyncio.gather(
            *(chair.command("notice.post", {"text": f"{text}{posted + i}"}) for i in range(50))
        )
        posted += 50
        waited = waited or slow.inflight is not None or bool(slow.queue)
        if waited and posted >= 400:
            break
    assert waited, "the slow socket never filled up: the waiting path was not exercised"
    assert slow in hub.sinks, "the stalled reader was closed"
    last = f"{text}{posted - 1}"
    await fast.wait_for(lambda s: s["core"]["notice"]["text"] == last, timeout(10))

    # … then read everything: the same notices as the fast client saw, in the same order.
    writer.transport.resume_reading()
    data = bytearray(reader._buffer)  # what the stream had read before the pause
    reader._buffer.clear()
    seen: list[str] = []
    async with asyncio.timeout(timeout(10)):
        while last not in seen:
            for frame in parse_frames(data):
                message = json.loads(frame)
                if message["type"] == "events":
                    seen += [e["text"] for e in message["events"] if e["type"] == "notice"]
            if last not in seen:
                data += await reader.read(65536)
    expected = [
        e["text"]
        for m in fast.received
        if m["type"] == "events"
        for e in m["events"]
        if e["type"] == "notice"
    ]
    assert seen == expected, "the stalled reader's notices differ from the log's order"
    assert len(seen) == posted and len(set(seen)) == posted
    writer.close()
    await fast.close()
    await chair.close()


async def test_the_eager_send_self_check_passes_and_catches_a_send_that_never_resumes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from server.node import eager

    await eager.self_check()

    # Were ``start`` to drop sends instead of running them, the check must say so.
    monkeypatch.setattr(eager, "start", lambda coro: coro.close())
    with pytest.raises(RuntimeError, match="did not finish at once"):
        await eager.self_check()
