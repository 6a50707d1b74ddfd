"""Per-fold cost of remembering command ids once a room remembers 200,000 of them.

    python bench/forget.py [--ids 200000] [--folds 100000] [--quick]

The fold remembers each command id (for idempotent retries) and forgets the oldest beyond
``fold.MAX_OUTCOMES``. Forgetting one id per fold with ``del d[next(iter(d))]`` leaves a
tombstone at the head of the dict that every later ``next(iter(d))`` walks over again, so
the cost grew with the tombstones (issue 8: 52 µs per fold). ``fold.forget_oldest`` drops
the oldest ``FORGET_BATCH`` at once instead.

Folds ``tick`` entries (the cheapest command: every slice's tick finds nothing due) into a
room that already remembers ``--ids`` ids, with each strategy plugged into the same fold,
and times every fold. Pure CPU, no sockets: no namespace needed. Prints a table for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server import fold  # noqa: E402
from server.types import Entry, RoomConfig  # noqa: E402

Forget = Callable[[dict[str, dict[str, str] | None]], None]


def one_at_a_time(outcomes: dict[str, dict[str, str] | None]) -> None:
    """The fold's forgetting before issue 8: the oldest id, every fold."""
    while len(outcomes) > fold.MAX_OUTCOMES:
        del outcomes[next(iter(outcomes))]


def never(outcomes: dict[str, dict[str, str] | None]) -> None:
    """No forgetting at all: the cost of the fold and a plain insert, for reference."""


def run(name: str, forget: Forget, ids: int, folds: int) -> dict[str, float | str]:
    state = fold.new_state(RoomConfig(id="bench", title="Bench", channels=("es", "fr")))
    outcomes = state["meta"]["outcomes"]
    for n in range(ids):
        outcomes[f"old-{n}"] = None
    entries: list[Entry] = [
        {
            "cid": f"cid-{n}",
            "actor": {"pid": "node", "role": "system", "conn": None},
            "cmd": "tick",
            "args": {},
            "ts": 1_000 + n,
        }
        for n in range(folds)
    ]
    saved = fold.forget_oldest
    fold.forget_oldest = forget  # the fold looks it up at every call
    times = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for n, entry in enumerate(entries):
            t0 = clock()
            fold.fold(state, f"{n}-0", entry)
            times.append(clock() - t0)
    finally:
        gc.enable()
        fold.forget_oldest = saved
    times.sort()
    return {
        "strategy": name,
        "remembered": f"{len(outcomes):,}",
        "mean": statistics.fmean(times) / 1000,
        "p50": times[len(times) // 2] / 1000,
        "p99": times[int(len(times) * 0.99)] / 1000,
        "max": times[-1] / 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ids", type=int, default=fold.MAX_OUTCOMES)
    parser.add_argument("--folds", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="tiny run (seconds), for a smoke")
    args = parser.parse_args()
    ids, folds = (args.ids, args.folds) if not args.quick else (2_000, 3_000)
    saved_max = fold.MAX_OUTCOMES
    fold.MAX_OUTCOMES = ids
    try:
        rows = [
            run("no forgetting (reference)", never, ids, folds),
            run("one at a time (before)", one_at_a_time, ids, folds),
            run(f"batches of {fold.FORGET_BATCH:,} (now)", fold.forget_oldest, ids, folds),
        ]
    finally:
        fold.MAX_OUTCOMES = saved_max
    print(
        f"{folds:,} tick folds into a room remembering {ids:,} command ids; "
        f"Python {platform.python_version()}, {platform.machine()}\n"
    )
    print("| strategy | ids at the end | mean µs/fold | p50 | p99 | max |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['strategy']} | {r['remembered']} | {r['mean']:.1f} | {r['p50']:.1f} "
            f"| {r['p99']:.1f} | {r['max']:.0f} |"
        )


if __name__ == "__main__":
    main()
