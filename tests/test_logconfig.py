"""Invite tokens never reach a log line or a metric: the filter, and a real `hemicycle serve`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.client import Client, CommandError
from server.node.auth import Invites
from server.node.logconfig import REDACTED, RedactTokens, log_config, redact
from server.protocol import JSON

from .conftest import SECRET, free_port, timeout


def test_redact_removes_token_values_and_token_shapes() -> None:
    token = Invites(SECRET).mint(room="plenary", role="moderator", name="Chair")
    payload, signature = token.rsplit(".", 1)
    for text in (
        f"/ws?token={token}&after=1-0",
        f"https://x.org/r/plenary#t={token}",
        f"Authorization: Bearer {token}",
        f"bad token {token!r} given",
    ):
        clean = redact(text)
        assert payload not in clean and signature not in clean and REDACTED in clean, text
    assert redact("/ws?after=12-0") == "/ws?after=12-0"
    assert redact("server.node.sessions: closing slow connection n1~abc") == (
        "server.node.sessions: closing slow connection n1~abc"
    )


def test_the_filter_cleans_arguments_and_tracebacks() -> None:
    token = Invites(SECRET).mint(room="plenary", role="moderator", name="Chair")
    # uvicorn's access formatter unpacks the arguments itself: they must stay a tuple.
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", f"/ws?token={token}", "1.1", 101), None,
    )  # fmt: skip
    assert RedactTokens().filter(record)
    assert isinstance(record.args, tuple) and record.args[2] == f"/ws?token={REDACTED}"
    try:
        raise ValueError(f"could not read {token}")
    except ValueError:
        record = logging.LogRecord("server", logging.ERROR, __file__, 1, "x", (), sys.exc_info())
    RedactTokens().filter(record)
    text = logging.Formatter().format(record)
    assert "ValueError" in text and token.rsplit(".", 1)[1] not in text


def test_the_config_filters_every_handler() -> None:
    config = log_config("info")
    assert all(h["filters"] == ["redact_tokens"] for h in config["handlers"].values())
    assert config["loggers"]["server"]["handlers"] == ["default"]
    assert config["root"]["handlers"] == ["default"]
    assert "server" not in log_config(own=False)["loggers"]


async def test_a_served_node_writes_no_token_anywhere() -> None:
    """`hemicycle serve` as a process: invites of every kind, refusals and errors, then every
    byte it wrote (stdout and stderr) and /metrics are searched for any part of any token."""
    invites = Invites(SECRET)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HEMICYCLE_SECRET": SECRET, "HEMICYCLE_NODE": "logcheck"}
    tokens: list[str] = []
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            async with httpx.AsyncClient(base_url=base, timeout=timeout(10)) as http:
                deadline = time.monotonic() + timeout(30)
                while True:
                    try:
                        if (await http.get("/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert proc.poll() is None and time.monotonic() < deadline, "no start"
                    await asyncio.sleep(0.1)
                chair_token = invites.mint(room="plenary", role="moderator", name="Chair")
                tokens.append(chair_token)
                chair = await Client.connect(base, chair_token)
                minted = await http.post(
                    "/api/invites",
                    json={"role": "participant", "name": "Sokha Chan", "org": "aple-kh"},
                    headers={"Authorization": f"Bearer {chair_token}"},
                )
                assert minted.status_code == 200
                tokens.append(minted.json()["token"])
                ana = await Client.connect(base, tokens[-1], codec="json")
                booth = invites.mint(
                    room="plenary", role="interpreter", name="Elena", booth="es", pair=["en", "es"]
                )
                tokens.append(booth)
                elena = await Client.connect(base, booth)
                # Error paths: a refused command, a bad frame, bad bodies, bad tokens.
                with pytest.raises(CommandError):
                    await ana.command("agenda.next")
                await ana.ws.send("{not json")
                bad = await http.post(
                    "/api/invites",
                    content=b"[1",
                    headers={"Authorization": f"Bearer {chair_token}"},
                )
                assert bad.status_code == 400
                expired = invites.mint(room="plenary", role="participant", name="X", hours=-1)
                tampered = chair_token[:-3] + "abc"
                other = Invites("another-" + SECRET).mint(
                    room="plenary", role="moderator", name="Y"
                )
                tokens += [expired, other]
                for token in (expired, tampered, other):
                    url = base.replace("http", "ws") + "/ws?token=" + token
                    async with connect(url, subprotocols=[JSON]) as ws:  # type: ignore[list-item]
                        assert json.loads(await ws.recv())["type"] == "error"
                        with pytest.raises(ConnectionClosed):
                            await ws.recv()
                unauthorised = await http.get(
                    "/api/transcripts/plenary/en", headers={"Authorization": f"Bearer {tampered}"}
                )
                assert unauthorised.status_code == 401
                metrics = (await http.get("/metrics")).text
                for client in (chair, ana, elena):
                    await client.close()
        finally:
            proc.terminate()
            proc.wait(timeout(20))
        out.seek(0)
        text = out.read()
    assert "WebSocket /ws?token=[redacted]" in text, text[-2000:]  # the upgrades were logged
    for token in tokens:
        payload, signature = token.rsplit(".", 1)
        for part in (token, payload, signature):
            assert part not in text, f"a token part is in the server output:\n{text[-3000:]}"
            assert part not in metrics
    assert "Traceback" not in text, text
