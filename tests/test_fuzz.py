"""Fuzzing the wire: over 100,000 generated frames against a real node (uvicorn, memory
backend), both codecs, from three connections with the frame rate lifted.

Frames are structure-aware (hypothesis): valid envelopes of every frame type and command
with random arguments, wrong types in every field, nesting far past the limit, strings
past the frame limit, unknown types, garbage bytes and text. Asserted:

- nothing at ERROR and no traceback in any log record (root, ``server.*``, asyncio and
  uvicorn's loggers), no connection dropped;
- every ``error`` and refused ``reply`` carries a code the docs list (docs/*.md);
- a batch of frames that must all be refused before the log gets one answer each, all
  refusals, and leaves the room's state digest (``fold.digest``) unchanged;
- afterwards a normal client joins and is served.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect

from server import fold
from server.client import Client
from server.node.auth import Invites
from server.types import PARTICIPANT

from .conftest import NodeFactory

ROOM = "plenary"
DOCS = Path(__file__).resolve().parents[1] / "docs"
FRAMES_PER_EXAMPLE = 50
TOTAL = 100_200
"""Frames of the main run, over three connections."""
REFUSED = 3_000
"""Frames that must all be refused before the log."""

Frame = str | bytes


def documented_codes() -> set[str]:
    """Every `snake_case` word in backticks in the docs: the error codes are among them."""
    text = "".join(p.read_text(encoding="utf-8") for p in DOCS.glob("*.md"))
    return set(re.findall(r"`([a-z][a-z0-9_]*)`", text))


# -- strategies -------------------------------------------------------------------------------

ARG_KEYS = [
    "pid", "lang", "text", "index", "id", "def", "chat", "preset", "on", "input", "emoji",
    "purpose", "sdp", "target", "pc", "partner", "poll", "choice", "choices", "ballot",
    "token", "blinded", "room", "kind", "seconds", "options", "question", "mix",
]  # fmt: skip
leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", "original", "en", "es", "fr", "floor", "👏", "a", "p1", "-1", "0"]),
)
json_value = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(ARG_KEYS), st.text(max_size=6)), inner, max_size=4
        ),
    ),
    max_leaves=10,
)
args = st.one_of(
    st.dictionaries(st.sampled_from(ARG_KEYS), json_value, max_size=5),
    json_value,  # wrong types: a list, a number, a string, null
)


@st.composite
def deep(draw: st.DrawFn) -> Any:
    """Nesting past the 32-level limit (up to what the encoders here can write; deeper
    frames are written by hand in ``frames``: 30,000 levels)."""
    depth = draw(st.integers(min_value=33, max_value=400))
    value: Any = draw(st.sampled_from([[], {}, 0, "x"]))
    as_map = draw(st.booleans())
    for _ in range(depth):
        value = {"a": value} if as_map else [value]
    return value


@st.composite
def huge(draw: st.DrawFn, min_size: int = 500) -> str:
    size = draw(st.integers(min_value=min_size, max_value=80_000))
    return draw(st.sampled_from(["x", "é", "字", "\u0000", "😀"])) * size


def envelopes(commands: list[str], frame_types: list[str]) -> st.SearchStrategy[Any]:
    """Envelopes of every kind, their ``args`` left to :func:`assemble`: commands (known
    names and random ones), every frame type with its fields, wrong types in every field,
    bare values."""
    name = st.one_of(st.sampled_from(commands), st.text(max_size=20))
    kind = st.one_of(
        st.sampled_from([*frame_types, "command", "ping", "react", "welcome", "reply"]),
        st.text(max_size=10),
    )
    cid = st.one_of(st.text(min_size=1, max_size=8), json_value)
    command = st.fixed_dictionaries(
        {"type": st.just("command"), "cid": cid, "name": name}, optional={"room": json_value}
    )
    other = st.fixed_dictionaries(
        {"type": kind},
        optional={
            "cid": cid,
            "echo": json_value,
            "emoji": json_value,
            "purpose": st.sampled_from(["listen", "publish", "x"]),
            "sdp": st.one_of(st.text(max_size=40), st.just("v=0\r\n")),
            "pc": json_value,
            "on": json_value,
            "target": json_value,
        },
    )
    wrong = st.dictionaries(
        st.sampled_from(["type", "cid", "name", "args"]), json_value, max_size=4
    )
    return st.one_of(command, command, command, other, wrong, json_value)


def garbage() -> st.SearchStrategy[Frame]:
    return st.one_of(
        st.binary(max_size=64),
        st.text(max_size=64),
        st.just("{" * 40_000),
        st.just(b"\x91" * 40_000),  # msgpack arrays 40,000 deep, unfinished
        st.just("[" * 30_000 + "]" * 30_000),  # valid JSON, 30,000 deep
        st.just(b"\x91" * 30_000 + b"\xc0"),  # valid msgpack, 30,000 deep
        st.just(
            '{"type":"command","cid":"d","name":"hand.raise","args":'
            + '{"a":' * 30_000
            + "1"
            + "}" * 30_001
        ),
    )


def encode_json(value: Any) -> Frame:
    return json.dumps(value, allow_nan=True)


def encode_msgpack(value: Any) -> Frame:
    return bytes(msgpack.packb(value, use_bin_type=True))


@dataclass
class Pools:
    """Parts drawn by hypothesis; :func:`assemble` combines them into frames (drawing
    100,000 whole frames one by one costs hypothesis about 1 ms each)."""

    envelopes: list[Any]
    args: list[Any]
    deep: list[Any]
    huge: list[str]
    garbage: list[Frame]


def draw_pools(commands: list[str], frame_types: list[str]) -> Pools:
    return Pools(
        envelopes=draw_many(envelopes(commands, frame_types), 3_000),
        args=draw_many(args, 3_000),
        deep=draw_many(deep(), 200),
        huge=draw_many(huge(), 100),
        garbage=draw_many(garbage(), 300),
    )


def assemble(pools: Pools, count: int, seed: int) -> Iterator[Frame]:
    """``count`` frames: an envelope with drawn args (or nested far too deep, or a huge
    string in a field), in either codec; now and then garbage."""
    rng = random.Random(seed)
    for _ in range(count):
        if rng.random() < 0.04:
            yield rng.choice(pools.garbage)
            continue
        value = rng.choice(pools.envelopes)
        if isinstance(value, dict):
            value = dict(value)
            r = rng.random()
            if r < 0.6:
                value["args"] = rng.choice(pools.args)
            elif r < 0.64:
                value["args"] = rng.choice(pools.deep)
            elif r < 0.66:
                value[rng.choice(["args", "cid", "echo", "sdp", "text"])] = rng.choice(pools.huge)
        frame = encode_json(value) if rng.random() < 0.5 else encode_msgpack(value)
        if len(frame) <= 1_000_000:  # 1 MiB: the WebSocket limit (a 1009 close)
            yield frame


def refused_frames(forbidden: list[str], frame_types: list[str]) -> st.SearchStrategy[Frame]:
    """Frames a participant sends that are all refused before anything reaches the log."""
    cid = st.text(min_size=1, max_size=8)
    command = st.fixed_dictionaries(
        {
            "type": st.just("command"),
            "cid": cid,
            "name": st.one_of(
                st.sampled_from(forbidden),  # another role's command: forbidden
                st.text(max_size=10).map(lambda t: "zz." + t),  # no such command
            ),
        },
        optional={"args": st.one_of(args, deep())},
    )
    broken = st.one_of(
        st.fixed_dictionaries(
            {
                "type": st.just("command"),
                "cid": json_value.filter(lambda v: not isinstance(v, str) or not v),
            }
        ),  # no usable cid
        st.fixed_dictionaries({"type": st.text(max_size=8).map(lambda t: "zz." + t)}),
        st.fixed_dictionaries({"type": json_value.filter(lambda v: not isinstance(v, str))}),
        deep(),
        st.lists(json_value, max_size=3),
        # over 64 KiB, or it would be a valid hand.raise
        huge(70_000).map(lambda h: {"type": "command", "cid": "c", "name": "hand.raise", "x": h}),
    )
    value = st.one_of(command, broken)
    encoded = st.one_of(
        value.map(encode_json),
        value.map(encode_msgpack),
        # never a msgpack map (0x80-0x8f, 0xde, 0xdf): garbage, not a frame that might pass
        st.binary(min_size=1, max_size=40).filter(
            lambda b: not (0x80 <= b[0] <= 0x8F or b[0] >= 0xDE)
        ),
        st.just("not json"),
        st.just("[" * 30_000 + "]" * 30_000),
        st.just(b"\x91" * 30_000 + b"\xc0"),
    )
    return encoded.filter(lambda f: len(f) <= 1_000_000)


def draw_many(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """``count`` values of ``strategy`` (hypothesis, generation only, 50 per example)."""
    out: list[Any] = []

    @settings(
        max_examples=-(-count // FRAMES_PER_EXAMPLE),
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(strategy, min_size=FRAMES_PER_EXAMPLE, max_size=FRAMES_PER_EXAMPLE))
    def collect(batch: list[Any]) -> None:
        out.extend(batch)

    collect()
    return out[:count]


# -- the wire ---------------------------------------------------------------------------------


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.bad: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno >= logging.ERROR or record.exc_info or "Traceback" in text:
            self.bad.append(f"{record.name} {record.levelname}: {text[:300]}")


class Conn:
    """A raw WebSocket that sends frames and gathers every answer."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.answers: list[dict[str, Any]] = []
        self.pongs: asyncio.Queue[Any] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw) if isinstance(raw, str) else msgpack.unpackb(raw)
            if message.get("type") == "pong" and str(message.get("echo", "")).startswith("@"):
                await self.pongs.put(message["echo"])
            else:
                self.answers.append(message)

    async def send_all(self, batch: list[Frame], mark: str) -> None:
        for frame in batch:
            await self.ws.send(frame)
        await self.ws.send(json.dumps({"type": "ping", "echo": mark}))
        async with asyncio.timeout(60):
            while (await self.pongs.get()) != mark:
                pass


async def open_conn(url: str, token: str, sub: str) -> Conn:
    ws = await connect(
        url.replace("http", "ws", 1) + "/ws?token=" + token,
        subprotocols=[sub],  # type: ignore[list-item]
        max_size=None,
        open_timeout=10,
    )
    first = await ws.recv()
    welcome = json.loads(first) if isinstance(first, str) else msgpack.unpackb(first)
    assert welcome["type"] == "welcome"
    return Conn(ws)


def refusals(answers: list[dict[str, Any]]) -> list[str]:
    return [
        a["code"]
        for a in answers
        if a.get("type") == "error" or (a.get("type") == "reply" and not a.get("ok"))
    ]


async def test_fuzzing_the_wire(start_node: NodeFactory, invites: Invites, tmp_path: Path) -> None:
    started = time.monotonic()
    records = Records()
    loggers = [logging.getLogger(n) for n in ("", "uvicorn", "uvicorn.error", "uvicorn.access")]
    for logger in loggers:
        logger.addHandler(records)
    lifted = {
        "command_rate": 1e9,
        "command_burst": 1e9,
        "rate_strikes": 1e9,
        "recordings": str(tmp_path),
    }
    node = await start_node(settings=lifted)
    hub = node.node.hubs[ROOM]
    rules = node.node.rules
    commands = sorted(rules.commands)
    frame_types = sorted(node.node.frames)
    forbidden = sorted(n for n, c in rules.commands.items() if PARTICIPANT not in c.roles)
    known = documented_codes()
    conns: list[Conn] = []
    try:
        ana = await open_conn(
            node.url, invites.mint(room=ROOM, role="participant", name="Ana"), "hemicycle.json"
        )
        chair = await open_conn(
            node.url, invites.mint(room=ROOM, role="moderator", name="Chair"), "hemicycle.msgpack"
        )
        booth = await open_conn(
            node.url,
            invites.mint(room=ROOM, role="interpreter", name="Ivan", booth="es", pair=["en", "es"]),
            "hemicycle.json",
        )
        conns = [ana, chair, booth]

        # 1. Frames that must all be refused before the log: one refusal each, same digest.
        refused_all = draw_many(refused_frames(forbidden, frame_types), REFUSED)
        refused = [refused_all[i : i + 500] for i in range(0, len(refused_all), 500)]
        await asyncio.sleep(0.5)  # the chair's join brings entries of its own (ballot keys)
        before = fold.digest(hub.state)
        ana.answers.clear()  # the joins' events
        sent = 0
        for n, batch in enumerate(refused):
            await ana.send_all(batch, f"@r{n}")
            sent += len(batch)
        codes = refusals(ana.answers)
        assert len(codes) == sent and len(ana.answers) == sent, (len(ana.answers), sent)
        assert set(codes) <= known, set(codes) - known
        assert fold.digest(hub.state) == before, "a refused frame changed the room"
        generated = time.monotonic()

        # 2. 100,000 frames of every kind over three connections, both codecs.
        pools = draw_pools(commands, frame_types)
        generated_all = time.monotonic()
        counts = [0] * len(conns)

        async def pump(i: int, conn: Conn) -> None:
            stream = assemble(pools, TOTAL // len(conns) + 1, seed=i)
            n = 0
            while batch := list(itertools.islice(stream, 500)):
                await conn.send_all(batch, f"@c{i}-{n}")
                counts[i] += len(batch)
                n += 1

        await asyncio.gather(*(pump(i, c) for i, c in enumerate(conns)))
        total = sum(counts)
        assert total >= 100_000, total
        await asyncio.sleep(1.0)  # offers answer from a task: let the last ones come
        for conn in conns:
            assert conn.ws.close_code is None, conn.ws.close_code
            unknown = set(refusals(conn.answers)) - known
            assert not unknown, f"undocumented error codes: {unknown}"
        assert records.bad == [], records.bad[:5]

        # 3. The node still serves a normal client.
        sokha = await Client.connect(
            node.url, invites.mint(room=ROOM, role="participant", name="Sokha")
        )
        reply = await sokha.command("hand.raise")
        assert reply["ok"] is True
        await sokha.wait_for(lambda s: sokha.me in s["core"]["hands"])
        await sokha.close()
        elapsed = time.monotonic() - started
        seen = Counter(code for c in conns for code in refusals(c.answers))
        # The mix reaches past the envelope checks: argument checks and the room's state.
        assert {"bad_frame", "frame_too_large", "unknown_type", "bad_args", "forbidden"} <= set(
            seen
        ), seen
        print(seen.most_common())
        print(
            f"\nfuzz: {sent} refused + {total} frames; generating"
            f" {generated_all - generated:.1f} s, whole test {elapsed:.1f} s"
        )
    finally:
        for conn in conns:
            await conn.ws.close()
        for logger in loggers:
            logger.removeHandler(records)
    assert records.bad == [], records.bad[:5]


def test_the_documented_codes_include_the_limits() -> None:
    codes = documented_codes()
    for code in ("rate_limited", "displaced", "too_many_candidates", "bad_candidate", "replaced"):
        assert code in codes, code


pytestmark = pytest.mark.timeout(300)
