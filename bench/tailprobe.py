"""Where a process's latency tail goes: cyclic GC pauses and event-loop callbacks that block.

    python bench/tailprobe.py OUT.json -m server.cli serve …   # run a module, probed
    from tailprobe import Probe; probe = Probe(); probe.install() … summary(probe.raw(), t0, t1)

Installs ``gc.callbacks`` (the time of every collection, by generation) and times every
asyncio callback (``Handle._run``), keeping those longer than ``SLOW_MS`` with what they ran.
A benchmark sets ``HC_BENCH_TAILS=DIR`` to have its server processes run under this and its
own process probed; the reports go to DIR and the benchmark prints a summary. Costs two
``perf_counter`` calls per callback: a probed run is for attribution, not for the table.
"""

from __future__ import annotations

import asyncio.events
import atexit
import gc
import json
import os
import runpy
import sys
import time
from collections import Counter
from typing import Any

SLOW_MS = 5.0
TYPES = int(os.environ.get("HC_TAILPROBE_TYPES", "0"))
"""Keep the N commonest types of the tracked objects at each full collection (the last's)."""


class Probe:
    def __init__(self) -> None:
        self.gc: list[tuple[float, int, float, float]] = []
        """Every collection: (wall clock at its end, generation, pause in ms, CPU ms)."""
        self.slow: list[tuple[float, float, float, str]] = []
        """Callbacks that held the loop longer than ``SLOW_MS``: (wall clock, ms, CPU ms,
        what). A pause much longer than its CPU time is the process waiting for a core."""
        self.types: list[tuple[str, int]] = []
        """The commonest tracked types at the last full collection (``HC_TAILPROBE_TYPES``)."""
        self.walked: list[int] = []
        """Objects the collector tracks after each full collection."""
        self.callbacks = 0
        self._t0 = self._c0 = 0.0

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0, self._c0 = time.perf_counter(), time.thread_time()
        else:
            ms = (time.perf_counter() - self._t0) * 1000
            cpu = (time.thread_time() - self._c0) * 1000
            self.gc.append((time.time(), info["generation"], ms, cpu))
            if info["generation"] == 2:  # what a full collection walks (not the frozen)
                tracked = gc.get_objects()
                self.walked.append(len(tracked))
                if TYPES:
                    top = Counter(type(o).__qualname__ for o in tracked).most_common(TYPES)
                    self.types = top
                del tracked

    def install(self) -> None:
        gc.callbacks.append(self._on_gc)
        run = asyncio.events.Handle._run
        probe = self

        def timed(handle: asyncio.events.Handle) -> None:
            t0, c0 = time.perf_counter(), time.thread_time()
            run(handle)
            ms = (time.perf_counter() - t0) * 1000
            probe.callbacks += 1
            if ms > SLOW_MS:
                cpu = (time.thread_time() - c0) * 1000
                probe.slow.append((time.time(), ms, cpu, repr(handle)[:200]))

        asyncio.events.Handle._run = timed  # type: ignore[method-assign]

    def raw(self) -> dict[str, Any]:
        return {
            "gc": self.gc,
            "slow": self.slow,
            "callbacks": self.callbacks,
            "walked": self.walked,
            "types": self.types,
            "frozen": gc.get_freeze_count(),
            "thresholds": gc.get_threshold(),
        }


def summary(raw: dict[str, Any], since: float, until: float) -> dict[str, Any]:
    """What ``raw`` (a :meth:`Probe.raw`) saw between two wall-clock times."""

    def stats(items: list[tuple[float, float]]) -> dict[str, float]:
        return {
            "n": len(items),
            "total_ms": sum(ms for ms, _ in items),
            "max_ms": max((ms for ms, _ in items), default=0.0),
            "max_cpu_ms": max((cpu for _, cpu in items), default=0.0),
        }

    gcs = [(g, ms, cpu) for t, g, ms, cpu in raw["gc"] if since <= t <= until]
    slow = [(ms, cpu, what) for t, ms, cpu, what in raw["slow"] if since <= t <= until]
    return {
        "gc": {n: stats([(ms, cpu) for g, ms, cpu in gcs if g == n]) for n in (0, 1, 2)},
        "slow": stats([(ms, cpu) for ms, cpu, _ in slow]),
        "slowest": sorted(slow, reverse=True)[:5],
        "frozen": raw["frozen"],
        "walked": raw.get("walked", []),
    }


def describe(name: str, s: dict[str, Any]) -> str:
    g = s["gc"]
    parts = [
        f"gen{n} {g[n]['n']}× max {g[n]['max_ms']:.1f} ms (CPU {g[n]['max_cpu_ms']:.1f})"
        f" Σ {g[n]['total_ms']:.0f} ms"
        for n in (0, 1, 2)
    ]
    w = s["slow"]
    lines = [
        f"{name}: GC {'; '.join(parts)} (frozen {s['frozen']}, tracked after each full collection "
        f"of the run: {s['walked']}); callbacks over {SLOW_MS:g} ms: "
        f"{w['n']}, max {w['max_ms']:.1f} ms (CPU {w['max_cpu_ms']:.1f}), Σ {w['total_ms']:.0f} ms"
    ]
    lines += [f"    {ms:.1f} ms (CPU {cpu:.1f}) {what}" for ms, cpu, what in s["slowest"][:3]]
    return "\n".join(lines)


def main() -> None:
    out, argv = sys.argv[1], sys.argv[2:]
    if argv[:1] != ["-m"]:
        raise SystemExit("usage: tailprobe.py OUT.json -m MODULE [ARGS…]")
    probe = Probe()
    probe.install()

    def write() -> None:
        with open(out, "w", encoding="utf-8") as f:
            json.dump(probe.raw(), f)

    atexit.register(write)
    sys.argv = [argv[1], *argv[2:]]
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
