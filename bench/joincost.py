"""What one join costs a room of N people (issue 13): is anything per join O(roster)?

One process, a real ``RoomHub`` (memory backend, the node's real features and rules) whose
roster holds N people and N local connections (``bench/recipients.py``'s ``room_of``). For
each N: the events one ``join`` folds into (and one ``leave``), their frame's size on the
wire (msgpack and JSON, as every other participant gets it), and the CPU time
(``time.process_time``, median of five runs) of folding the join, and of folding it and
broadcasting its frame to the N connections. A join that is a delta has a frame size and a
fold time that do not grow with N; only the broadcast (one send per connection) does.

    .venv/bin/python bench/joincost.py --sizes 10,100,1000,3000
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from recipients import room_of  # noqa: E402

from server.protocol import encode  # noqa: E402
from server.types import SYSTEM, Actor  # noqa: E402

NEWCOMER = {"pid": "new", "name": "Newcomer", "role": "participant", "country": "AT"}


def entry(cmd: str, args: dict[str, Any], n: int) -> dict[str, Any]:
    actor = Actor("node", SYSTEM).to_wire()
    return {"cid": f"{cmd}:{n}", "actor": actor, "cmd": cmd, "args": args, "ts": 1}


async def step(size: int, rounds: int) -> dict[str, Any]:
    hub, _ = await room_of(size)
    ids = itertools.count(size + 10)

    def fold(cmd: str, conn: str) -> list[Any]:
        n = next(ids)
        args = {**NEWCOMER, "conn": conn} if cmd == "join" else {"pid": "new", "conn": conn}
        outcome = hub.rules.fold(hub.state, f"{n}-0", entry(cmd, args, n))
        assert outcome.error is None, outcome.error
        return outcome.events

    joined = fold("join", "c0")
    left = fold("leave", "c0")
    sizes = {
        codec: len(encode({"type": "events", "id": "1-0", "events": joined}, codec))
        for codec in ("msgpack", "json")
    }
    fold_us, fanout_us = [], []
    for _ in range(5):
        start = time.process_time()
        for r in range(rounds):
            fold("join", f"c{r}")
            fold("leave", f"c{r}")
        fold_us.append((time.process_time() - start) / rounds * 1e6)
        start = time.process_time()
        for r in range(rounds):
            n = next(ids)
            hub._broadcast(f"{n}-0", fold("join", f"d{r}"))  # what the fold loop does
            hub._broadcast(f"{n}-1", fold("leave", f"d{r}"))
        fanout_us.append((time.process_time() - start) / rounds * 1e6)
    return {
        "size": size,
        "join events": [e["type"] for e in joined],
        "leave events": [e["type"] for e in left],
        "frame msgpack": sizes["msgpack"],
        "frame json": sizes["json"],
        "fold join+leave µs": statistics.median(fold_us),
        "fold+broadcast join+leave µs": statistics.median(fanout_us),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10,100,1000,3000")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    rows = [asyncio.run(step(int(n), args.rounds)) for n in args.sizes.split(",")]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        cells = [f"{v:.1f}" if isinstance(v, float) else str(v) for v in row.values()]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
