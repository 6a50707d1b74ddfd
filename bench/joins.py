"""Join storm: N delegates open the room at the same moment (issue 13).

Two ``hemicycle serve`` nodes (uvicorn, separate processes) on one redis-server; N clients
(msgpack subprotocol, the ``websockets`` library) in ``--workers`` processes, half on each
node, all released at one instant. Each client measures from its connect call to its
welcome; the run ends when every client is welcomed (or ``--deadline`` passes). Reported:
all welcomed after (s), welcome p50/p99, node CPU seconds (both nodes) during the storm,
and the welcome's size.

``--root`` runs the nodes from another checkout of hemicycle (its ``server/`` package), so
a change is measured against the code before it in the same run, on the same machine:

    python bench/joins.py --clients 1000                       # this tree
    python bench/joins.py --clients 1000 --root /path/to/main  # the code before

Run it inside the loopback-only namespace, like the tests:
    unshare -r -n -- sh -c 'ip link set lo up && exec .venv/bin/python bench/joins.py'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fanout import Procs, cpu_seconds, free_port, start_redis, wait_http  # noqa: E402

from server.node.auth import Invites  # noqa: E402

ROOM = "plenary"
SECRET = "bench-secret-0123456789abcdefghijklmnopqrstuv"


def start_nodes(procs: Procs, redis_url: str, root: Path) -> tuple[list[str], list[int]]:
    urls, pids = [], []
    for name in ("a", "b"):
        port = free_port()
        env = {
            "HEMICYCLE_SECRET": SECRET,
            "HEMICYCLE_NODE": name,
            "PYTHONPATH": str(root),
            "HEMICYCLE_CONN_RATE": "1000000",  # every client comes from 127.0.0.1
            "HEMICYCLE_CONN_BURST": "1000000",
        }
        profile = os.environ.get("HC_BENCH_PROFILE")  # a directory: cProfile each node
        wrap = ["-m", "cProfile", "-o", f"{profile}/node-{name}.prof"] if profile else []
        argv = [sys.executable, *wrap, "-m", "server.cli", "serve", "--port", str(port)]
        argv += ["--backend", redis_url, "--config", str(ROOT / "config" / "assembly.toml")]
        # cwd too: ``python -m`` puts the working directory first on the path.
        log = open(procs.tmp / f"node-{name}.log", "wb")  # noqa: SIM115 - the process owns it
        proc = subprocess.Popen(
            argv, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, cwd=root
        )
        log.close()
        procs.procs.append(proc)
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, 60)
        spy = os.environ.get("HC_BENCH_PYSPY")  # "<py-spy binary>:<seconds>:<directory>"
        if spy:
            binary, seconds, out = spy.split(":")
            spy_argv = [binary, "record", "-p", str(proc.pid), "-d", seconds, "-r", "100"]
            spy_argv += ["-f", "raw", "-o", f"{out}/node-{name}.txt", "--nonblocking"]
            subprocess.Popen(spy_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        urls.append(f"ws://127.0.0.1:{port}/ws")
        pids.append(proc.pid)
    return urls, pids


async def join_all(jobs: list[tuple[str, str]], start_at: float, deadline: float) -> list[Any]:
    """Connect every job at ``start_at`` (wall clock); the seconds to each welcome."""
    from websockets.asyncio.client import connect

    from server.protocol import MSGPACK, unpack

    held = []

    async def one(url: str, token: str) -> tuple[float | None, int]:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(max(1.0, deadline - time.time())):
                ws = await connect(
                    f"{url}?token={token}",
                    subprotocols=[MSGPACK],  # type: ignore[list-item]
                    max_size=None,
                    open_timeout=None,
                    ping_interval=None,
                )
                held.append(ws)
                first = await ws.recv()
            if not isinstance(first, bytes) or unpack(first)["type"] != "welcome":
                return None, 0
        except Exception:  # refused, reset or too late: not welcomed
            return None, 0
        return time.perf_counter() - t0, len(first)

    results = await asyncio.gather(*(one(u, t) for u, t in jobs))
    await asyncio.sleep(0.5)  # hold them all a moment: nobody leaves during the storm
    with contextlib.suppress(Exception):  # all at once: one slow close must not hold the rest
        async with asyncio.timeout(15):
            await asyncio.gather(*(ws.close() for ws in held), return_exceptions=True)
    return results


def worker(jobs: list[tuple[str, str]], start_at: float, deadline: float, out: Any) -> None:
    """One client process; it always answers (its failures as not welcomed)."""
    try:
        results = asyncio.run(join_all(jobs, start_at, deadline))
    except BaseException:
        traceback.print_exc()
        results = [(None, 0)] * len(jobs)
    out.send(results)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def run(clients: int, workers: int, root: Path, deadline_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hc-joins-") as tmp:
        procs = Procs(Path(tmp))
        try:
            _, redis_url = start_redis(procs)
            urls, pids = start_nodes(procs, redis_url, root)
            invites = Invites(SECRET)
            jobs = [
                (urls[i % 2], invites.mint(room=ROOM, role="participant", name=f"Delegate {i}"))
                for i in range(clients)
            ]
            start_at = time.time() + 2.0 + clients / 2000  # time for the workers to start
            deadline = start_at + deadline_s
            ctx = mp.get_context("spawn")
            pipes, children = [], []
            for w in range(workers):
                parent, child = ctx.Pipe(duplex=False)
                proc = ctx.Process(
                    target=worker, args=(jobs[w::workers], start_at, deadline, child)
                )
                proc.start()
                pipes.append(parent)
                children.append(proc)
            time.sleep(max(0.0, start_at - time.time()))
            cpu0 = sum(cpu_seconds(p) for p in pids)
            results = []
            for pipe, share in zip(pipes, range(workers), strict=True):
                if pipe.poll(deadline - time.time() + 60):
                    results += pipe.recv()
                else:  # a client process that never answered: its clients count as failed
                    results += [(None, 0)] * len(jobs[share::workers])
            for proc in children:
                proc.join(10)
                if proc.is_alive():
                    proc.kill()
            cpu = sum(cpu_seconds(p) for p in pids) - cpu0
        finally:
            procs.stop_all()
    took = [t for t, _ in results if t is not None]
    sizes = [n for t, n in results if t is not None]
    return {
        "clients": clients,
        "welcomed": len(took),
        "all": max(took) if took else float("nan"),
        "p50": percentile(took, 50) if took else float("nan"),
        "p99": percentile(took, 99) if took else float("nan"),
        "cpu": cpu,
        "bytes": max(sizes) if sizes else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", default="200,1000", help="comma-separated sizes")
    parser.add_argument("--workers", type=int, default=4, help="client processes")
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout the nodes run from")
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds per storm")
    args = parser.parse_args()
    print(f"nodes from {args.root}")
    print(
        "| clients | welcomed | all welcomed after | welcome p50 | p99 | node CPU | last welcome |"
    )
    print("|---|---|---|---|---|---|---|")
    for n in (int(c) for c in args.clients.split(",")):
        r = run(n, args.workers, args.root.resolve(), args.deadline)
        print(
            f"| {n:,} | {r['welcomed']:,} | {r['all']:.2f} s | {r['p50'] * 1000:.0f} ms "
            f"| {r['p99'] * 1000:.0f} ms | {r['cpu']:.2f} s | {r['bytes']:,} B |",
            flush=True,
        )


if __name__ == "__main__":
    main()
