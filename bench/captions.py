"""Captions to many listeners over four channels and two nodes: delivered lines/s and latency.

Starts its own redis-server on a free port and two `hemicycle serve` nodes sharing it, then
connects LISTENERS msgpack WebSockets spread evenly over the nodes and over the plenary's
four channels (original, es, fr, ru), from WORKERS listener processes. Captioners (SENDERS
per channel, half on each node) post lines at RATE lines/s each for SECONDS; every line
carries its send time, and each listener records the latency of the lines of its own
channel. Captions travel on the room log (docs/protocol.md, "Channels and booths"), so
every listener also receives the other channels' lines: both counts are printed.

    python bench/captions.py                       # 1,000 listeners, 20 s
    python bench/captions.py --listeners 40 --seconds 5      # a quick check

Run it inside the loopback-only namespace, like the tests:
    unshare -r -n -- sh -c 'ip link set lo up && exec python bench/captions.py'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.node.auth import Invites  # noqa: E402
from server.protocol import MSGPACK, pack, unpack  # noqa: E402

ROOM = "plenary"
CHANNELS = ("original", "es", "fr", "ru")
SECRET = "bench-secret-0123456789abcdefghijklmnopqrstuv"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(url: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        time.sleep(0.1)
    raise SystemExit(f"no answer from {url}")


def start_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(tmp),
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            str(tmp / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return proc, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def start_node(name: str, backend: str, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "HEMICYCLE_SECRET": SECRET,
        "HEMICYCLE_NODE": name,
        # every simulated client comes from 127.0.0.1: lift the per-address limit
        "HEMICYCLE_CONN_RATE": "1000000",
        "HEMICYCLE_CONN_BURST": "1000000",
        "PYTHONPATH": str(ROOT),
    }
    log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--backend", backend],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz")
    return proc, url


def member_socket(url: str, token: str, open_timeout: float) -> Any:
    """A person's WebSocket to the node at ``url`` (msgpack frames), for ``async with``."""
    from websockets.asyncio.client import connect

    ws_url = url.replace("http", "ws", 1) + "/ws?token=" + token
    return connect(
        ws_url,
        subprotocols=[MSGPACK],
        max_size=None,  # type: ignore[list-item]
        open_timeout=open_timeout,
    )


# --- listener workers (separate processes) ------------------------------------------------


async def _listen(
    url: str, token: str, lang: str, ready: Any, go: Any, stop: Any, out: dict[str, Any]
) -> None:
    async with member_socket(url, token, open_timeout=60) as ws:
        await ws.recv()  # welcome
        if lang != "original":
            await ws.send(
                pack(
                    {
                        "type": "command",
                        "cid": "c1",
                        "name": "channel.choose",
                        "args": {"lang": lang},
                    }
                )
            )
        ready()
        async for frame in ws:
            message = unpack(frame)
            if message["type"] != "events":
                continue
            now = time.time()
            for event in message["events"]:
                if event["type"] != "caption":
                    continue
                out["frames"] += 1
                if event["lang"] == lang and go.is_set() and not stop.is_set():
                    sent = float(event["text"].split("|", 1)[0])
                    out["latencies"].append((now - sent) * 1000)
            if stop.is_set():
                return


def worker(
    jobs: list[tuple[str, str, str]], ready_q: Any, go: Any, stop: Any, results: Any
) -> None:
    async def main() -> None:
        out = {"frames": 0, "latencies": []}
        loop = asyncio.get_running_loop()
        tasks = []
        for i, (url, token, lang) in enumerate(jobs):
            tasks.append(
                loop.create_task(_listen(url, token, lang, lambda: ready_q.put(1), go, stop, out))
            )
            if i % 50 == 49:
                await asyncio.sleep(0.2)  # connect in batches: every join goes to everyone
        while not stop.is_set():
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        results.put(out)

    asyncio.run(main())


# --- senders (in the main process) --------------------------------------------------------


async def send_lines(
    url: str, token: str, lang: str, rate: float, seconds: float, tally: dict[str, int]
) -> None:
    async with member_socket(url, token, open_timeout=30) as ws:
        await ws.recv()
        replies: dict[str, asyncio.Future[dict[str, Any]]] = {}

        async def read() -> None:
            async for frame in ws:
                message = unpack(frame)
                if message["type"] == "reply" and message["cid"] in replies:
                    replies.pop(message["cid"]).set_result(message)

        reader = asyncio.create_task(read())
        start = time.monotonic()
        n = 0
        pending = []
        while time.monotonic() - start < seconds:
            n += 1
            cid = f"l{n}"
            fut = replies[cid] = asyncio.get_running_loop().create_future()
            pending.append(fut)
            text = f"{time.time():.6f}|{lang} line {n} " + "lorem ipsum dolor sit amet " * 2
            await ws.send(
                pack(
                    {
                        "type": "command",
                        "cid": cid,
                        "name": "caption.post",
                        "args": {"lang": lang, "text": text},
                    }
                )
            )
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        for fut in pending:
            try:
                reply = await asyncio.wait_for(fut, 10)
            except TimeoutError:
                tally["lost_replies"] += 1
                continue
            tally["ok" if reply["ok"] else reply["code"]] = (
                tally.get("ok" if reply["ok"] else reply["code"], 0) + 1
            )
            if reply["ok"]:
                tally["ok_" + lang] = tally.get("ok_" + lang, 0) + 1
        reader.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--listeners", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--senders", type=int, default=2, help="captioners per channel")
    parser.add_argument(
        "--rate", type=float, default=3.0, help="lines/s per captioner (the room allows 4)"
    )
    parser.add_argument("--workers", type=int, default=2, help="listener processes")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hc-bench-") as tmpdir:
        tmp = Path(tmpdir)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            redis, backend = start_redis(tmp)
            procs.append(redis)
            nodes = []
            for name in ("a", "b"):
                proc, url = start_node(name, backend, tmp)
                procs.append(proc)
                nodes.append(url)
            run(args, nodes)
        finally:
            for proc in reversed(procs):
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)


def run(args: argparse.Namespace, nodes: list[str]) -> None:
    invites = Invites(SECRET)
    jobs = [
        (
            nodes[i % 2],
            invites.mint(room=ROOM, role="participant", name=f"L{i}"),
            CHANNELS[(i // 2) % len(CHANNELS)],
        )
        for i in range(args.listeners)
    ]
    per_channel = {c: sum(1 for j in jobs if j[2] == c) for c in CHANNELS}
    ctx = mp.get_context("fork")
    ready_q, results = ctx.Queue(), ctx.Queue()
    go, stop = ctx.Event(), ctx.Event()
    workers = [
        ctx.Process(
            target=worker, args=(jobs[w :: args.workers], ready_q, go, stop, results), daemon=True
        )
        for w in range(args.workers)
    ]
    t0 = time.monotonic()
    for w in workers:
        w.start()
    for _ in range(args.listeners):
        ready_q.get(timeout=300)
    connect_s = time.monotonic() - t0
    time.sleep(1.0)  # let the last joins and choices settle

    tally: dict[str, int] = {"lost_replies": 0}
    senders = [
        (nodes[(i + k) % 2], invites.mint(room=ROOM, role="captioner", name=f"C{i}{k}"), lang)
        for i, lang in enumerate(CHANNELS)
        for k in range(args.senders)
    ]

    async def send_all() -> None:
        go.set()
        await asyncio.gather(
            *(
                send_lines(url, token, lang, args.rate, args.seconds, tally)
                for url, token, lang in senders
            )
        )

    t1 = time.monotonic()
    asyncio.run(send_all())
    time.sleep(1.0)  # the last lines in flight
    elapsed = time.monotonic() - t1
    stop.set()
    outs = [results.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(10)

    latencies = sorted(x for o in outs for x in o["latencies"])
    frames = sum(o["frames"] for o in outs)
    expected = sum(tally.get("ok_" + c, 0) * per_channel[c] for c in CHANNELS)
    sent_ok = tally.get("ok", 0)
    refused = {k: v for k, v in tally.items() if k != "ok" and not k.startswith("ok_") and v}

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else 0.0

    rows = [
        ("listeners (2 nodes, 4 channels)", f"{args.listeners}"),
        ("captioners", f"{len(senders)} at {args.rate:g} lines/s"),
        ("connect + choose, all listeners", f"{connect_s:.1f} s"),
        ("lines accepted", f"{sent_ok}"),
        (
            "lines refused (code: n)",
            ", ".join(f"{k}: {v}" for k, v in sorted(refused.items())) or "none",
        ),
        ("lines accepted per second", f"{sent_ok / args.seconds:.1f}"),
        ("delivered lines/s (own channel)", f"{len(latencies) / elapsed:,.0f}"),
        ("delivered / expected (own channel)", f"{len(latencies)} / {expected}"),
        ("caption frames/s (all channels)", f"{frames / elapsed:,.0f}"),
        (
            "latency p50 / p99 / max",
            f"{pct(0.5):.1f} / {pct(0.99):.1f} / {latencies[-1] if latencies else 0:.1f} ms",
        ),
        ("latency mean", f"{statistics.fmean(latencies) if latencies else 0:.1f} ms"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"\nhemicycle captions benchmark ({os.cpu_count()} cores)\n")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    print()


if __name__ == "__main__":
    main()
