"""The WebSocket wire and HTTP routes, against a real uvicorn node (memory backend)."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import httpx
import msgpack
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.client import Client, CommandError
from server.node import sessions
from server.node.auth import Invites
from server.node.log import id_key
from server.protocol import JSON, MSGPACK

from .conftest import SECRET, NodeFactory, timeout
from .waiting import eventually


def ws_url(base: str, token: str, after: str | None = None) -> str:
    url = base.replace("http", "ws", 1) + "/ws?token=" + token
    return url + (f"&after={after}" if after else "")


async def test_welcome_then_commands_and_events(start_node: NodeFactory, invites: Invites) -> None:
    node = await start_node()
    chair = await Client.connect(
        node.url, invites.mint(room="plenary", role="moderator", name="Chair")
    )
    ana = await Client.connect(
        node.url,
        invites.mint(
            room="plenary", role="participant", name="Sokha Chan", org="aple-kh", country="KH"
        ),
        codec="json",
    )
    assert ana.welcome["room"] == "plenary"
    assert ana.you["name"] == "Sokha Chan" and ana.you["org"] == "aple-kh"
    assert ana.welcome["assembly"]["members"]["aple-kh"]["country"] == "KH"
    await chair.wait_for(lambda s: ana.me in s["core"]["people"])
    reply = await ana.command("hand.raise")
    assert reply["ok"] is True
    await chair.wait_for(lambda s: s["core"]["hands"] == [ana.me])
    await chair.command("floor.grant", {"pid": ana.me})
    await ana.wait_for(lambda s: s["core"]["speakers"] == [ana.me])
    assert ana.state["core"] == chair.state["core"]
    await ana.close()
    await chair.wait_for(lambda s: not s["core"]["people"][ana.me]["conns"])
    await chair.close()


async def test_a_refused_command_gets_one_reply_and_changes_nothing(
    start_node: NodeFactory, invites: Invites
) -> None:
    node = await start_node()
    ana = await Client.connect(
        node.url, invites.mint(room="plenary", role="participant", name="Ana")
    )
    before = node.node.hubs["plenary"].state["core"]["current"]
    for name, args, code in [
        ("agenda.next", {}, "forbidden"),  # a chair's command
        ("floor.grant", {"pid": ana.me}, "forbidden"),
        ("join", {"pid": "x"}, "forbidden"),  # a node's command
        ("no.such.command", {}, "unknown_type"),
        ("hand.lower", {}, "hand_not_raised"),  # refused by the room's state
        ("agenda.goto", "not a map", "forbidden"),
    ]:
        with pytest.raises(CommandError) as err:
            await ana.command(name, args)  # type: ignore[arg-type]
        assert err.value.code == code, name
    with pytest.raises(CommandError) as err:
        await ana.command("hand.raise", room="panel")
    assert err.value.code == "wrong_room"
    assert node.node.hubs["plenary"].state["core"]["current"] == before
    assert node.node.hubs["plenary"].state["core"]["hands"] == []
    assert (await ana.command("hand.raise"))["ok"]  # the connection still serves
    await ana.close()


@pytest.mark.parametrize("subprotocol", [JSON, MSGPACK])
async def test_bad_frames_get_errors_and_the_connection_survives(
    start_node: NodeFactory, invites: Invites, subprotocol: str
) -> None:
    node = await start_node()
    token = invites.mint(room="plenary", role="participant", name="Ana")
    binary = subprotocol == MSGPACK
    dec = (lambda f: msgpack.unpackb(f)) if binary else json.loads
    async with connect(
        ws_url(node.url, token),
        subprotocols=[subprotocol],  # type: ignore[list-item]
        max_size=None,
    ) as ws:
        assert dec(await ws.recv())["type"] == "welcome"

        async def error_for(frame: bytes | str) -> dict:
            await ws.send(frame)
            async with asyncio.timeout(timeout(5)):
                while True:
                    m = dec(await ws.recv())
                    if m["type"] in ("error", "reply"):
                        return m

        assert (await error_for("{not json"))["code"] == "bad_frame"
        assert (await error_for(b"\xc1\xc1garbage"))["code"] == "bad_frame"
        assert (await error_for("[1, 2, 3]"))["code"] == "bad_frame"
        assert (await error_for(json.dumps({"no": "type"})))["code"] == "bad_frame"
        assert (await error_for(json.dumps({"type": "dance"})))["code"] == "unknown_type"
        big = json.dumps(
            {"type": "command", "cid": "1", "name": "notice.post", "args": {"text": "x" * 70_000}}
        )
        assert (await error_for(big))["code"] == "frame_too_large"
        bad = await error_for(json.dumps({"type": "command", "cid": "c9", "name": 5}))
        assert bad == {
            "type": "reply",
            "cid": "c9",
            "ok": False,
            "code": "bad_args",
            "message": "'name' must be a string",
        }
        await ws.send(json.dumps({"type": "ping", "echo": 7}))
        async with asyncio.timeout(timeout(5)):
            while (m := dec(await ws.recv()))["type"] != "pong":
                pass
        assert m["echo"] == 7
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(node.url + "/metrics")).text
    assert 'hemicycle_bad_frames_total{code="bad_frame"}' in metrics


@pytest.mark.parametrize("case", ["missing", "tampered", "other-secret", "expired"])
async def test_bad_tokens_are_refused_with_4001(
    start_node: NodeFactory, invites: Invites, case: str
) -> None:
    node = await start_node()
    token = {
        "missing": "",
        "tampered": invites.mint(room="plenary", role="moderator", name="X")[:-3] + "abc",
        "other-secret": Invites("another-" + SECRET).mint(
            room="plenary", role="moderator", name="X"
        ),
        "expired": invites.mint(room="plenary", role="participant", name="X", hours=-1),
    }[case]
    async with connect(ws_url(node.url, token), subprotocols=[JSON]) as ws:  # type: ignore[list-item]
        message = json.loads(await ws.recv())
        assert message["type"] == "error"
        assert message["code"] == ("token_expired" if case == "expired" else "bad_token")
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 4001
    assert node.node.hubs["plenary"].state["core"]["people"] == {}


async def test_an_open_socket_is_closed_with_4003_when_its_invite_expires(
    start_node: NodeFactory, invites: Invites
) -> None:
    node = await start_node()
    chair = await Client.connect(
        node.url, invites.mint(room="plenary", role="moderator", name="Chair")
    )
    short = invites.mint(room="plenary", role="participant", name="Brief", hours=1.5 / 3600)
    claims = invites.verify(short)
    async with connect(ws_url(node.url, short), subprotocols=[JSON]) as ws:  # type: ignore[list-item]
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome"
        pid = welcome["you"]["pid"]
        await chair.wait_for(lambda s: bool(s["core"]["people"].get(pid, {}).get("conns")))
        frames = []
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(timeout(10)):
                while True:
                    frames.append(json.loads(await ws.recv()))
        closed_at = time.time()
        assert ws.close_code == 4003 and ws.close_reason == "invite expired"
    assert frames[-1]["type"] == "error" and frames[-1]["code"] == "token_expired"
    assert claims["exp"] <= closed_at < claims["exp"] + timeout(2)  # at exp: a timer
    await chair.wait_for(lambda s: not s["core"]["people"][pid]["conns"])
    assert (await chair.command("hand.raise"))["ok"]  # the others carry on
    async with connect(ws_url(node.url, short), subprotocols=[JSON]) as ws:  # type: ignore[list-item]
        assert json.loads(await ws.recv())["code"] == "token_expired"
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 4001
    await chair.close()


async def test_unknown_room_is_refused_with_4004(start_node: NodeFactory, invites: Invites) -> None:
    node = await start_node()
    async with connect(
        ws_url(node.url, invites.mint(room="attic", role="participant", name="X")),
        subprotocols=[JSON],
    ) as ws:  # type: ignore[list-item]
        assert json.loads(await ws.recv())["code"] == "unknown_room"
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 4004


async def test_resume_gets_exactly_the_missed_events(
    start_node: NodeFactory, invites: Invites
) -> None:
    node = await start_node()
    chair = await Client.connect(
        node.url, invites.mint(room="plenary", role="moderator", name="Chair")
    )
    ana = await Client.connect(
        node.url, invites.mint(room="plenary", role="participant", name="Ana")
    )
    await ana.command("hand.raise")
    await ana.wait_for(lambda s: s["core"]["hands"])
    await ana.ws.close()  # the socket drops …
    last = ana.last
    for text in ("one", "two", "three"):
        await chair.command("notice.post", {"text": text})
    seen = len(ana.received)
    assert await ana.resume()  # … and comes back with ?after=<last id>
    await ana.wait_for(lambda s: s["core"]["notice"] and s["core"]["notice"]["text"] == "three")
    ids = [m["id"] for m in ana.received[seen:] if m["type"] == "events"]
    notices = [
        e["text"]
        for m in ana.received[seen:]
        if m["type"] == "events"
        for e in m["events"]
        if e["type"] == "notice"
    ]
    assert notices == ["one", "two", "three"]  # none missing, none repeated
    assert len(ids) == len(set(ids)) and all(id_key(i) > id_key(last) for i in ids)
    server = node.node.hubs["plenary"].view_for(ana.you)
    await ana.wait_for(lambda s: s["core"] == server["core"])
    await ana.close()
    await chair.close()


async def test_resume_from_an_unknown_id_gets_a_fresh_snapshot(
    start_node: NodeFactory, invites: Invites
) -> None:
    node = await start_node()
    token = invites.mint(room="plenary", role="participant", name="Ana")
    c = await Client.connect(node.url, token, after="999999-0")
    assert c.welcome["resumed"] is False and "core" in c.state
    await c.close()
    c = await Client.connect(node.url, token, after="garbage")
    assert c.welcome["resumed"] is False
    await c.close()


async def test_a_retried_cid_is_counted_once(start_node: NodeFactory, invites: Invites) -> None:
    node = await start_node()
    ana = await Client.connect(
        node.url, invites.mint(room="plenary", role="participant", name="Ana")
    )
    first = await ana.request("hand.raise", cid="retry-1")
    second = await ana.request("hand.raise", cid="retry-1")
    assert first["ok"] and not first["duplicate"]
    assert second["ok"] and second["duplicate"]
    raised = [
        e
        for m in ana.received
        if m["type"] == "events"
        for e in m["events"]
        if e["type"] == "hand.raised"
    ]
    assert len(raised) == 1
    await ana.close()


async def test_commands_are_rate_limited(start_node: NodeFactory, invites: Invites) -> None:
    node = await start_node()
    ana = await Client.connect(
        node.url, invites.mint(room="plenary", role="participant", name="Ana")
    )
    replies = await asyncio.gather(*(ana.request("hand.lower") for _ in range(40)))
    codes = {r["code"] for r in replies}
    assert codes == {"hand_not_raised", "rate_limited"}
    await ana.close()


async def test_a_slow_consumer_is_closed_with_a_resume_hint_and_others_carry_on(
    start_node: NodeFactory, invites: Invites, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessions, "MAX_QUEUE", 16)
    node = await start_node(settings={"command_rate": 1e6, "command_burst": 1e6})
    chair = await Client.connect(
        node.url, invites.mint(room="plenary", role="moderator", name="Chair")
    )
    fast = await Client.connect(
        node.url, invites.mint(room="plenary", role="participant", name="Fast")
    )
    # The slow client reads nothing after its handshake (a raw socket, reading paused).
    slow_token = invites.mint(room="plenary", role="participant", name="Slow")
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port, limit=2**16)
    writer.write(
        (
            f"GET /ws?token={slow_token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {JSON}\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    writer.transport.pause_reading()  # from here on, read nothing
    hub = node.node.hubs["plenary"]
    await eventually(
        lambda: len(hub.sinks), until=lambda n: n >= 3, message="three connections in the room"
    )
    text = "n" * 480
    started = time.monotonic()
    sent = 0
    while len(hub.sinks) == 3 and time.monotonic() - started < timeout(20):
        await asyncio.gather(
            *(chair.command("notice.post", {"text": f"{text}{sent + i}"}) for i in range(50))
        )
        sent += 50
    assert len(hub.sinks) == 2, "the slow consumer was never closed"
    last = f"{text}{sent - 1}"
    await fast.wait_for(lambda s: s["core"]["notice"]["text"] == last, timeout(10))
    # The slow socket, read at last, ends with a 4008 close frame saying where to resume …
    writer.transport.resume_reading()
    hint = sessions.CLOSE_SLOW.to_bytes(2, "big") + b"slow consumer; resume after "
    data = b""
    async with asyncio.timeout(timeout(sessions.CLOSE_GRACE)):
        while hint not in data and (chunk := await reader.read(65536)):
            data += chunk
    at = data.find(hint)
    assert at > 2 and data[at - 2] == 0x88, "no 4008 close frame"  # FIN + close opcode
    resume_id = data[at + len(hint) : at + data[at - 1]].decode()
    assert id_key(resume_id) <= id_key(hub.state["meta"]["last"])
    # … and its person goes offline for everyone else.
    slow_pid = next(p for p, v in fast.state["core"]["people"].items() if v["name"] == "Slow")
    await fast.wait_for(lambda s: not s["core"]["people"][slow_pid]["conns"], timeout(10))
    writer.close()
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(node.url + "/metrics")).text
    assert "hemicycle_slow_consumer_closes_total 1.0" in metrics
    await fast.close()
    await chair.close()


async def test_health_and_metrics(start_node: NodeFactory) -> None:
    node = await start_node()
    async with httpx.AsyncClient(base_url=node.url) as http:
        health = (await http.get("/healthz")).json()
        assert health["ok"] is True and set(health["rooms"]) == {"plenary", "panel"}
        metrics = (await http.get("/metrics")).text
        assert "hemicycle_connections" in metrics and "hemicycle_log_entries_total" in metrics


async def test_moderators_mint_invites_over_http(start_node: NodeFactory, invites: Invites) -> None:
    node = await start_node()
    chair = invites.mint(room="plenary", role="moderator", name="Chair")
    ana = invites.mint(room="plenary", role="participant", name="Ana")
    async with httpx.AsyncClient(base_url=node.url) as http:
        ok = await http.post(
            "/api/invites",
            headers={"Authorization": f"Bearer {chair}"},
            json={"role": "panelist", "name": "Grace Namuli", "org": "uydel-ug"},
        )
        assert ok.status_code == 200, ok.text
        body = ok.json()
        assert body["link"].startswith(node.url + "/r/plenary#t=")
        claims = Invites(SECRET).verify(body["token"])
        assert claims["role"] == "panelist" and claims["org"] == "uydel-ug"
        denied = await http.post(
            "/api/invites",
            headers={"Authorization": f"Bearer {ana}"},
            json={"role": "moderator", "name": "Me"},
        )
        assert denied.status_code == 403 and denied.json()["code"] == "forbidden"
        anon = await http.post("/api/invites", json={"role": "moderator", "name": "Me"})
        assert anon.status_code == 401 and anon.json()["code"] == "bad_token"
        bad = await http.post(
            "/api/invites",
            headers={"Authorization": f"Bearer {chair}"},
            json={"role": "king", "name": "Me"},
        )
        assert bad.status_code == 400 and bad.json()["code"] == "bad_args"
        page = await http.get("/r/plenary")
        assert page.status_code == 200 and "/static/h/room.bundle." in page.text
        assert (await http.get("/r/attic")).status_code == 404


class ErrorRecords(logging.Handler):
    """Collects records at ERROR and above from the root and uvicorn's loggers (which do
    not propagate to the root, so pytest's ``caplog`` never sees them)."""

    NAMES = ("", "uvicorn", "uvicorn.error", "uvicorn.access")

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> ErrorRecords:
        for name in self.NAMES:
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.NAMES:
            logging.getLogger(name).removeHandler(self)

    def texts(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()} {r.exc_text or ''}" for r in self.records]


def nested(depth: int, inner: object = 1) -> object:
    value = inner
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("subprotocol", [JSON, MSGPACK])
async def test_deeply_nested_frames_get_a_clean_error_and_no_traceback(
    start_node: NodeFactory, invites: Invites, subprotocol: str
) -> None:
    node = await start_node()
    token = invites.mint(room="plenary", role="participant", name="Ana")
    binary = subprotocol == MSGPACK
    dec = (lambda f: msgpack.unpackb(f)) if binary else json.loads
    if binary:  # 30,000 one-element arrays then nil: 30 KB; and a map envelope 100 deep
        frames: list[bytes | str] = [
            b"\x91" * 30_000 + b"\xc0",
            msgpack.packb(
                {"type": "command", "cid": "d1", "name": "hand.raise", "args": {"x": nested(100)}}
            ),
            msgpack.packb({"type": "ballot", "cid": "d2", "name": "claim", "args": nested(40)}),
        ]
    else:  # 30,000 levels in 60 KB, bare and inside a command's args
        frames = [
            "[" * 30_000 + "]" * 30_000,
            '{"type":"command","cid":"d1","name":"hand.raise","args":{"x":'
            + "[" * 29_000
            + "]" * 29_000
            + "}}",
            json.dumps({"type": "command", "cid": "d2", "name": "hand.raise", "args": nested(40)}),
        ]
    assert all(len(f) <= 64 * 1024 for f in frames)
    with ErrorRecords() as errors:
        async with connect(
            ws_url(node.url, token),
            subprotocols=[subprotocol],  # type: ignore[list-item]
            max_size=None,
        ) as ws:
            assert dec(await ws.recv())["type"] == "welcome"
            for frame in frames:
                await ws.send(frame)
                async with asyncio.timeout(timeout(5)):
                    while (m := dec(await ws.recv()))["type"] not in ("error", "reply"):
                        pass
                assert m["type"] == "error" and m["code"] == "bad_frame", m
                assert "nest" in m["message"] or "depth" in m["message"].lower(), m
            await ws.send(msgpack.packb({"type": "ping"}) if binary else '{"type":"ping"}')
            async with asyncio.timeout(timeout(5)):
                while dec(await ws.recv())["type"] != "pong":
                    pass
        await asyncio.sleep(0.2)
    assert errors.texts() == []
    assert node.node.hubs["plenary"].state["core"]["hands"] == []


async def test_an_invite_body_with_a_bad_key_is_a_400_naming_it(
    start_node: NodeFactory, invites: Invites
) -> None:
    node = await start_node()
    chair = {"Authorization": "Bearer " + invites.mint(room="plenary", role="moderator", name="C")}
    base = {"role": "participant", "name": "Ana"}
    cases: list[tuple[object, str]] = [
        ({**base, "wieght": 2}, "'wieght'"),
        ({**base, "self": 1}, "'self'"),  # once a 500: mint() got two values for self
        ({**base, "pid": "chosen"}, "'pid'"),
        ({**base, "role": 5}, "'role'"),
        ({**base, "name": ["Ana"]}, "'name'"),
        ({**base, "room": 7}, "'room'"),
        ({**base, "hours": "soon"}, "'hours'"),
        ({**base, "hours": True}, "'hours'"),
        ({**base, "org": {"id": "x"}}, "'org'"),
        ({**base, "pair": "en"}, "'pair'"),
        ({**base, "pair": ["en", 5]}, "'pair'"),
        ({"name": "Ana"}, "'role'"),
        (["role", "name"], "JSON object"),
    ]
    with ErrorRecords() as errors:
        async with httpx.AsyncClient(base_url=node.url, headers=chair) as http:
            for body, named in cases:
                response = await http.post("/api/invites", json=body)
                assert response.status_code == 400, (body, response.text)
                assert response.json()["code"] == "bad_args"
                assert named in response.json()["message"], (body, response.json())
            deep = await http.post("/api/invites", content=("[" * 30_000 + "]" * 30_000).encode())
            assert deep.status_code == 400 and deep.json()["code"] == "bad_args"
            assert (await http.post("/api/invites", json=base)).status_code == 200
    assert errors.texts() == []
