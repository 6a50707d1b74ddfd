"""The floor's lanes: what choosing up to three voices costs the fan-out, against before.

One process, no sockets: a floor ``Source`` with N listener outlets whose sink only counts,
fed 20 ms frames of 1, 2 or 3 speaking microphones. It compares the floor as it was before
the lanes (``git show <rev>:server/media/relay.py``, one voice at a time), the lane floor
with one-track listeners (old clients), and with three-track listeners (the page), and
prints the fan-out cost per frame and per packet sent, and the ratio to before.

    .venv/bin/python bench/lanes.py --listeners 400 --frames 500 --repeat 9 --before main
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.media import relay  # noqa: E402


class Count:
    """A sink that takes every packet (what DirectSender's cost is not measured here)."""

    def __init__(self) -> None:
        self.n = 0

    def push(self, payload: bytes, timestamp: int, marker: bool = False) -> bool:
        self.n += 1
        return True


def before(rev: str) -> ModuleType:
    """relay.py as it was at ``rev``, as the module ``server.media.relay_before``."""
    text = subprocess.run(
        ["git", "show", f"{rev}:server/media/relay.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    spec = importlib.util.spec_from_loader("server.media.relay_before", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "server.media"
    exec(compile(text, f"{rev}:server/media/relay.py", "exec"), module.__dict__)
    return module


class Setup:
    """One floor with its listeners and the frames to push, measured again and again."""

    def __init__(self, mod: Any, listeners: int, lanes: int, voices: int, frames: int) -> None:
        self.floor = mod.Source("floor")
        self.sinks = []
        for n in range(listeners):
            for lane in range(lanes):
                sink = Count()
                self.sinks.append(sink)
                outlet = (
                    mod.Outlet(f"l{n}", sink, lane, lanes)
                    if lanes > 1
                    else mod.Outlet(f"l{n}", sink)
                )
                getattr(self.floor, "add", self.floor.outlets.add)(outlet)
        self.frames = [
            [mod.Frame(f"p{v}", f"p{v}", i, i * 960, b"x" * 80, 20) for v in range(voices)]
            for i in range(frames)
        ]
        self.now = 0.0
        self.best = float("inf")
        self.sent = 0

    def run(self) -> None:
        for s in self.sinks:
            s.n = 0
        start = time.perf_counter()
        for batch in self.frames:
            self.now += 0.02
            for frame in batch:
                self.floor.push(frame, self.now)
        self.best = min(self.best, time.perf_counter() - start)
        self.sent = sum(s.n for s in self.sinks)
        for batch in self.frames:  # the next run's frames move on (outlets drop repeats)
            for frame in batch:
                frame.ts = (frame.ts + 960 * len(self.frames)) & 0xFFFFFFFF

    @property
    def per_frame(self) -> float:
        return self.best / (len(self.frames) * len(self.frames[0]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listeners", type=int, default=400)
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--before", default="main", help="the git revision of the floor before")
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()
    old = before(args.before)
    rows: list[tuple[str, Any, int, int]] = [("before (one voice)", old, 1, 1)]
    rows += [("lanes, 1-track listeners", relay, 1, v) for v in (1, 2, 3)]
    rows += [("lanes, 3-track listeners", relay, 3, v) for v in (1, 2, 3)]
    setups = [Setup(mod, args.listeners, lanes, v, args.frames) for _, mod, lanes, v in rows]
    for _ in range(args.repeat):  # interleaved, the best of each: this machine is shared
        for setup in setups:
            setup.run()
    base = setups[0].per_frame
    print(f"{args.listeners} listeners, {args.frames} frames per voice, best of {args.repeat}\n")
    print("| floor | voices | µs per frame in | packets out | µs per packet out | × before |")
    print("|---|---|---|---|---|---|")
    for (name, _, _, voices), setup in zip(rows, setups, strict=True):
        per_packet = setup.best / max(1, setup.sent)
        print(
            f"| {name} | {voices} | {setup.per_frame * 1e6:.1f} | {setup.sent:,} "
            f"| {per_packet * 1e6:.3f} | {setup.per_frame / base:.2f} |"
        )


if __name__ == "__main__":
    main()
