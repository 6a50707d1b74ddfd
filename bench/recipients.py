"""Delivery by recipient and the cost of a welcome, in one process (issue 13).

A real :class:`RoomHub` (memory backend) holds N local connections (small sinks that keep
nothing: what is measured is the hub's work, not a socket's) in a room whose roster holds
those N people (N joins folded through the real rules of a node). Measured per step:

Times are CPU time of this process per call (median of five runs).

* **private event** — a booth's chat (``to: interpreters:es``, 2 interpreters) handed to the
  hub's broadcast: microseconds per event with the index (``RoomHub._broadcast``) against the
  scan it replaced (every connection checked with ``fold.visible``, kept here as
  :func:`scan` for the ratio), both run in this same process, alternately.
* **public event** — a notice to everyone, same two paths (the index must not cost the
  common case).
* **welcome** — what a join costs its node before any socket, JSON (as pages use): the
  old path (the person's view, a deep copy, then its encoding) against
  ``RoomHub.welcome_frame`` — cold (the first welcome at a log position: the parts seen
  alike are encoded from the live state, no copy) and warm (the next ones at that
  position: those parts are spliced in as encoded).

    python bench/recipients.py                  # 100, 1,000, 5,000 connections
    python bench/recipients.py --sizes 200 --quick
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server import fold  # noqa: E402
from server.node.backends import open_backends  # noqa: E402
from server.node.config import DEFAULT_CONFIG, Settings, load_assembly  # noqa: E402
from server.node.hub import RoomHub  # noqa: E402
from server.protocol import Codec, encode  # noqa: E402
from server.types import SYSTEM, Actor  # noqa: E402

ROOM = "plenary"


class Sink:
    def __init__(self, person: dict[str, Any], codec: Codec = "msgpack") -> None:
        self.person = person
        self.codec = codec
        self.frames = 0

    def deliver(
        self, frame: bytes | str, *, entry_id: str | None = None, ephemeral: bool = False
    ) -> None:
        self.frames += 1

    def revoked(self) -> None: ...

    def displace(self) -> None: ...

    async def drain(self, within: float) -> None: ...


def scan(hub: RoomHub, entry_id: str, events: list[Any]) -> None:
    """The broadcast before the index: every connection checked against every event."""
    message = {"type": "events", "id": entry_id, "events": events}
    shared: dict[Codec, bytes | str] = {}
    private = any("to" in e for e in events)
    for sink in tuple(hub.sinks):
        if private:
            mine = [e for e in events if fold.visible(e, sink.person)]
            if not mine:
                continue
            if len(mine) != len(events):
                sink.deliver(encode({**message, "events": mine}, sink.codec), entry_id=entry_id)
                continue
        frame = shared.get(sink.codec)
        if frame is None:
            frame = shared[sink.codec] = encode(message, sink.codec)
        sink.deliver(frame, entry_id=entry_id)


def per_call_us(fn: Callable[[], None], seconds: float) -> float:
    """Median of five timings, CPU microseconds of this process per call: CPU time, not
    wall time, so other work on a shared machine does not count against either path."""
    runs = []
    for _ in range(5):
        n, start = 0, time.process_time()
        while time.process_time() - start < seconds / 5:
            fn()
            n += 1
        runs.append((time.process_time() - start) / n * 1e6)
    return statistics.median(runs)


async def room_of(size: int) -> tuple[RoomHub, list[dict[str, Any]]]:
    from server.node.app import Node
    from server.web.app import features

    assembly = load_assembly(DEFAULT_CONFIG)
    settings = Settings(secret="bench-secret-0123456789abcdefghijklmnopqrstuv", node="bench")
    node = Node(settings, assembly, open_backends("memory://"), features(settings, assembly))
    hub = node.hubs[ROOM]
    people = []
    for i in range(size):
        interpreter = i < 2
        person = {
            "pid": f"p{i}",
            "conn": f"bench-c{i}",
            "name": f"Delegate {i}",
            "role": "interpreter" if interpreter else "participant",
            "country": "AT",
        }
        if interpreter:
            person |= {"booth": "es", "pair": ["en", "es"]}
        outcome = hub.rules.fold(
            hub.state,
            f"{i + 1}-0",
            {
                "cid": f"join:{i}",
                "actor": Actor("node", SYSTEM).to_wire(),
                "cmd": "join",
                "args": person,
                "ts": 1,
            },  # fmt: skip
        )
        assert outcome.error is None, outcome.error
        people.append(person)
    for person in people:
        hub.attach(Sink(person))  # type: ignore[arg-type]
    return hub, people


async def step(size: int, seconds: float) -> dict[str, float]:
    hub, people = await room_of(size)
    chat = [{"type": "booth.chat", "to": ["interpreters:es"], "text": "slower please"}]
    notice = [{"type": "notice", "text": "x" * 200}]
    out = {
        "private_index": per_call_us(lambda: hub._broadcast("9-0", chat), seconds),  # type: ignore[arg-type]
        "private_scan": per_call_us(lambda: scan(hub, "9-0", chat), seconds),
        "public_index": per_call_us(lambda: hub._broadcast("9-0", notice), seconds),  # type: ignore[arg-type]
        "public_scan": per_call_us(lambda: scan(hub, "9-0", notice), seconds),
    }
    person = people[-1]
    head = {"type": "welcome", "room": ROOM, "you": person, "last": "1-0", "now": 0}

    def cold() -> None:
        hub._alike_at = None  # as after a fold: a new log position
        hub.welcome_frame(head, person, "json")

    out["welcome_old"] = per_call_us(
        lambda: encode({**head, "state": hub.view_for(person)}, "json"), seconds
    )
    out["welcome_cold"] = per_call_us(cold, seconds)
    out["welcome_warm"] = per_call_us(lambda: hub.welcome_frame(head, person, "json"), seconds)
    out["welcome_bytes"] = len(hub.welcome_frame(head, person, "json"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--quick", action="store_true", help="0.2 s per measurement")
    args = parser.parse_args()
    seconds = 0.2 if args.quick else args.seconds
    print(
        "| connections (= roster) | private event: index | scan | ratio | public event: "
        "index | scan | welcome: old | cold | warm | bytes |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        r = asyncio.run(step(size, seconds))
        print(
            f"| {size:,} | {r['private_index']:.1f} µs | {r['private_scan']:.0f} µs "
            f"| {r['private_scan'] / r['private_index']:.0f}× "
            f"| {r['public_index']:.0f} µs | {r['public_scan']:.0f} µs "
            f"| {r['welcome_old'] / 1000:.2f} ms | {r['welcome_cold'] / 1000:.2f} ms "
            f"| {r['welcome_warm'] / 1000:.3f} ms | {int(r['welcome_bytes']):,} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
