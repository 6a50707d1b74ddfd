"""Vote storm: N voters cast within one second across two nodes on one Redis.

    python bench/votes.py [--voters 1000] [--window 1.0] [--kind open|secret|both] [--cluster]

Starts its own redis-server (config/redis-production.conf: AOF, appendfsync always) on a
free port and two ``hemicycle serve`` node processes sharing it, connects N members'
representatives (half to each node) and a chair, opens a formal vote with N members on the
roll, and has every voter cast at a random moment within the window. With ``--cluster`` the
two nodes share a real Redis Cluster instead (bench/crowd.py ``start_cluster``: three masters,
three replicas, config/redis-cluster-node.conf, appends that wait for a replica). Measures:

- ack: from sending the ballot to the reply (open ballot: one command; secret ballot: the
  claim, and claim + deposit until the ballot is durably in the log),
- close → sealed result at the chair, and close → published result at a voter,
- lost (acknowledged, not counted) and duplicated (counted more than once) ballots.

Run it inside the loopback-only namespace like the tests. Prints a table; the numbers of a
run go into docs/benchmarks.md ("Vote storm").
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.client import Client  # noqa: E402
from server.node.auth import Invites  # noqa: E402
from server.voter import SecretBallot, claim, frame  # noqa: E402

SERVER = Path(os.environ.get("HC_BENCH_SERVER", ROOT)).resolve()
"""The checkout whose nodes run (A/B against another commit with this same client)."""
SECRET = "bench-secret-0123456789abcdefghijklmnopqrstuv"
COUNTRIES = ["KH", "DO", "PS", "UG", "AT", "RS", "ML", "KZ", "HU", "GN", "BR", "IN", "PH"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def write_config(path: Path, voters: int) -> None:
    lines = ["[assembly]", 'name = "Vote storm"', 'floor = "en"', 'languages = ["es", "fr"]', ""]
    for i in range(voters):
        lines += [
            "[[members]]",
            f'id = "m{i}"',
            f'name = "Member {i}"',
            f'country = "{COUNTRIES[i % len(COUNTRIES)]}"',
            "",
        ]
    lines += [
        "[[rooms]]",
        'id = "plenary"',
        'title = "Plenary"',
        "[rooms.voting]",
        "key_bits = 2048",
        "",
    ]
    for poll_id, secret in (("open-vote", "false"), ("secret-vote", "true")):
        lines += [
            "[[rooms.polls]]",
            f'id = "{poll_id}"',
            'kind = "yesno"',
            'electorate = "roll"',
            f"secret = {secret}",
            'question = "Adopt the storm motion?"',
            'quorum = { of = "roll", fraction = 0.5 }',
            "",
        ]
        if secret == "true":
            lines.insert(-1, "mix = 5")
    path.write_text("\n".join(lines), encoding="utf-8")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def connect_all(urls: list[str], invites: Invites, voters: int) -> list[Client]:
    gate = asyncio.Semaphore(10)

    async def one(i: int) -> Client:
        token = invites.mint(room="plenary", role="participant", name=f"Rep {i}", org=f"m{i}")
        for attempt in range(5):  # a busy shared machine can miss the handshake timeout
            async with gate:
                try:
                    return await Client.connect(urls[i % 2], token)
                except TimeoutError:
                    if attempt == 4:
                        raise
        raise AssertionError("unreachable")

    return list(await asyncio.gather(*(one(i) for i in range(voters))))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def storm(
    kind: str, urls: list[str], voters: int, window: float, pids: list[int]
) -> dict[str, Any]:
    invites = Invites(SECRET)
    chair = await Client.connect(
        urls[0], invites.mint(room="plenary", role="moderator", name="Chair")
    )
    reps = await connect_all(urls, invites, voters)
    # This one process stands for 1,000 devices: its own collections of their 1,000 states
    # would count as the node's latency. What is alive now is never scanned again.
    gc.collect()
    gc.freeze()
    poll_id = "open-vote" if kind == "open" else "secret-vote"
    while (
        chair.state["polls"]["polls"][poll_id]["secret"]
        and chair.state["polls"]["polls"][poll_id]["keys"] is None
    ):
        await asyncio.sleep(0.05)
    await chair.command("poll.open", {"poll": poll_id})

    def is_open(s: dict[str, Any]) -> bool:
        return bool(s["polls"]["polls"].get(poll_id, {}).get("state") == "open")

    await asyncio.gather(*(r.wait_for(is_open, 30) for r in reps))
    acks: list[float] = []
    claims: list[float] = []
    acked: list[str] = []
    failed: list[str] = []
    deposits: list[asyncio.Task[None]] = []
    start = time.perf_counter() + 0.2
    wall0 = time.time() + 0.2
    cpu0 = [cpu_seconds(p) for p in pids] + [time.process_time()]

    async def vote(i: int) -> None:
        rep = reps[i]
        choice = random.choice(["yes", "no", "abstain"])
        if kind == "secret":  # the device's work (key, blinding) is done before the moment
            ballot = SecretBallot.new(rep.state, "plenary", poll_id, f"m{i}")
        await asyncio.sleep(max(0.0, start + random.random() * window - time.perf_counter()))
        t0 = time.perf_counter()
        if kind == "open":
            reply = await rep.request(
                "ballot.cast", {"poll": poll_id, "choice": choice}, timeout=60
            )
            if reply["ok"]:
                acks.append(time.perf_counter() - t0)
                acked.append(f"m{i}")
            else:
                failed.append(reply["code"])
            return
        reply = await claim(rep, ballot)
        if not reply["ok"]:
            failed.append(reply["code"])
            return
        claims.append(time.perf_counter() - t0)

        async def deposit() -> None:
            sent = await frame(rep, "deposit", ballot.sealed([choice]), timeout=120)
            if sent["ok"]:
                acks.append(time.perf_counter() - t0)
                acked.append(sent["tracker"])
            else:
                failed.append(sent["code"])

        deposits.append(asyncio.create_task(deposit()))

    await asyncio.gather(*(vote(i) for i in range(voters)))
    cast_done = time.perf_counter()
    wall1 = time.time()
    cpu1 = [cpu_seconds(p) for p in pids] + [time.process_time()]
    # Sealed ballots are appended (and acknowledged) at once: let those in flight land, so
    # close→sealed measures the reveal (opening every sealed ballot, one entry, the fold).
    await asyncio.gather(*deposits)
    await asyncio.sleep(0.3)
    t_close = time.perf_counter()
    await chair.command("poll.close", {"poll": poll_id})
    await chair.wait_for(lambda s: s["polls"]["polls"][poll_id]["sealed"], 60)
    t_sealed = time.perf_counter()
    # Publication goes to every page at once; 1,000 pages decoding it in this one Python
    # process would measure this process. Keep 10 watchers (5 per node) and measure them.
    watchers, others = reps[:10], reps[10:]
    await asyncio.gather(*(c.close() for c in others))
    t_publish = time.perf_counter()
    await chair.command("poll.publish", {"poll": poll_id})
    await asyncio.gather(
        *(
            w.wait_for(lambda s: s["polls"]["polls"][poll_id]["state"] == "published", 60)
            for w in watchers
        )
    )
    t_published = time.perf_counter()
    result = chair.state["polls"]["polls"][poll_id]["result"]
    if kind == "open":
        counted = [r["voter"] for r in result["roll_call"]]
    else:
        counted = list(result["trackers"])
    lost = len(set(acked) - set(counted))
    duplicated = len(counted) - len(set(counted))
    for c in (chair, *watchers):
        await c.close()
    return {
        "cpu": [b - a for a, b in zip(cpu0, cpu1, strict=True)],
        "kind": kind,
        "voters": voters,
        "acked": len(acked),
        "failed": len(failed),
        "failures": sorted(set(failed)),
        "ack_p50": pct(acks, 0.5),
        "ack_p99": pct(acks, 0.99),
        "claim_p50": pct(claims, 0.5),
        "claim_p99": pct(claims, 0.99),
        "spread": cast_done - start,
        "sealed": t_sealed - t_close,
        "published": t_published - t_publish,
        "ballots": result["ballots"],
        "lost": lost,
        "duplicated": duplicated + max(0, result["ballots"] - len(set(counted))),
        "mean_ack": statistics.fmean(acks) if acks else float("nan"),
        "window": (wall0, wall1),
    }


def start_processes(
    tmp: Path, voters: int, cluster: Any = None
) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    """One redis-server and two nodes; with ``cluster`` (a started tests/redis_cluster.py
    ``RedisCluster``), the two nodes on it instead (its masters' processes come first)."""
    if cluster is not None:
        procs = [cluster.procs[port] for port in cluster.masters()]
        backend = cluster.url
    else:
        procs, backend = start_redis(tmp)
    config = tmp / "storm.toml"
    write_config(config, voters)
    nodes, urls = start_nodes(tmp, config, backend)
    return procs + nodes, urls


def start_redis(tmp: Path) -> tuple[list[subprocess.Popen[bytes]], str]:
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        raise SystemExit("redis-server is not installed")
    rport = free_port()
    procs = [
        subprocess.Popen(
            [
                redis_bin,
                str(ROOT / "config" / "redis-production.conf"),
                "--port",
                str(rport),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(tmp),
                "--logfile",
                str(tmp / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    wait_port(rport)
    return procs, f"redis://127.0.0.1:{rport}/0"


def start_nodes(
    tmp: Path, config: Path, backend: str
) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    procs: list[subprocess.Popen[bytes]] = []
    urls = []
    for name in ("a", "b"):
        port = free_port()
        env = {
            **os.environ,
            "HEMICYCLE_SECRET": SECRET,
            "HEMICYCLE_NODE": f"node-{name}",
            # every simulated client comes from 127.0.0.1: lift the per-address limit
            "HEMICYCLE_CONN_RATE": "1000000",
            "HEMICYCLE_CONN_BURST": "1000000",
            "PYTHONPATH": str(SERVER),
        }
        profile = os.environ.get("HC_BENCH_PROFILE")  # a directory: cProfile each node
        tails = os.environ.get("HC_BENCH_TAILS")  # a directory: GC and loop probe (tailprobe)
        wrap = ["-m", "cProfile", "-o", f"{profile}/node-{name}.prof"] if profile else []
        if tails:
            wrap = [str(ROOT / "bench" / "tailprobe.py"), f"{tails}/node-{name}.json"]
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    *wrap,
                    "-m",
                    "server.cli",
                    "serve",
                    "--config",
                    str(config),
                    "--backend",
                    backend,
                    "--port",
                    str(port),
                    "--host",
                    "127.0.0.1",
                ],
                env=env,
                cwd=SERVER,
                stdout=open(tmp / f"node-{name}.log", "wb"),
                stderr=subprocess.STDOUT,
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    for url in urls:
        wait_port(int(url.rsplit(":", 1)[1]))
    return procs, urls


def master_calls(cluster: Any, reset: bool = False) -> dict[str, int]:
    """XADD and WAIT calls on the cluster's masters since the last ``reset``."""
    import redis

    calls = {"xadd": 0, "wait": 0}
    for port in cluster.masters():
        with redis.Redis(port=port) as r:
            if reset:
                r.config_resetstat()
                continue
            stats = r.info("commandstats")
            for name in calls:
                calls[name] += int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voters", type=int, default=1000)
    parser.add_argument("--window", type=float, default=1.0, help="seconds (default 1)")
    parser.add_argument("--kind", choices=["open", "secret", "both"], default="both")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="a Redis Cluster instead (three masters, three replicas, "
        "config/redis-cluster-node.conf; appends wait for a replica, wait=1)",
    )
    args = parser.parse_args()
    kinds = ["open", "secret"] if args.kind == "both" else [args.kind]
    tails = os.environ.get("HC_BENCH_TAILS")
    probe = None
    if tails:
        import tailprobe

        probe = tailprobe.Probe()
        probe.install()
    load = os.getloadavg()[0]
    rows = []
    keep = os.environ.get("HC_BENCH_KEEP")
    with tempfile.TemporaryDirectory(prefix="hc-votes-") as tmp:
        if keep:
            print(f"logs in {tmp} (copied to {keep})", file=sys.stderr)
        cluster = None
        if args.cluster:
            sys.path.insert(0, str(ROOT / "bench"))
            from crowd import start_cluster

            (Path(tmp) / "cluster").mkdir()
            cluster = start_cluster(Path(tmp) / "cluster")
        procs, urls = start_processes(Path(tmp), args.voters, cluster)
        try:
            time.sleep(1.0)  # the nodes derive the secret vote's keys at start
            for kind in kinds:
                if cluster is not None:
                    master_calls(cluster, reset=True)
                rows.append(
                    asyncio.run(storm(kind, urls, args.voters, args.window, [p.pid for p in procs]))
                )
                if cluster is not None:
                    rows[-1]["calls"] = master_calls(cluster)
        finally:
            for p in reversed(procs):
                p.terminate()
            if keep:
                shutil.copytree(tmp, keep, dirs_exist_ok=True)
            for p in procs:
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    print(f"(pid {p.pid} did not stop in 15 s; killed)", file=sys.stderr)
                    p.kill()
                    p.wait()
            if cluster is not None:
                cluster.stop()  # its replicas (the masters stopped above)
    ms = 1000
    store = (
        "a Redis Cluster (3 masters + 3 replicas, AOF, appendfsync always, wait=1)"
        if args.cluster
        else "one Redis (AOF, appendfsync always)"
    )
    print(f"\nVote storm: {args.voters} voters within {args.window:g} s over two nodes, {store}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average before: {load:.2f}, nodes from {SERVER}\n"
    )
    head = (
        "ballot",
        "acked",
        "failed",
        "ack p50",
        "ack p99",
        "claim p50",
        "claim p99",
        "casting took",
        "close→sealed result",
        "publish→on pages",
        "lost",
        "duplicated",
    )
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for r in rows:
        claim_cols = (
            ("–", "–")
            if r["kind"] == "open"
            else (f"{r['claim_p50'] * ms:.1f} ms", f"{r['claim_p99'] * ms:.1f} ms")
        )
        print(
            " | ".join(
                [
                    r["kind"],
                    str(r["acked"]),
                    f"{r['failed']} {' '.join(r['failures'])}".strip(),
                    f"{r['ack_p50'] * ms:.1f} ms",
                    f"{r['ack_p99'] * ms:.1f} ms",
                    *claim_cols,
                    f"{r['spread']:.2f} s",
                    f"{r['sealed'] * ms:.0f} ms",
                    f"{r['published'] * ms:.0f} ms",
                    str(r["lost"]),
                    str(r["duplicated"]),
                ]
            )
        )
    redis = "each of the 3 masters" if args.cluster else "redis"
    print(f"\nCPU seconds used while casting ({redis}, node a, node b, this client process):")
    for r in rows:
        print(f"  {r['kind']}: " + ", ".join(f"{c:.2f}" for c in r["cpu"]))
    if args.cluster:
        print("\nCalls on the masters while casting (from their commandstats):")
        for r in rows:
            print(f"  {r['kind']}: XADD {r['calls']['xadd']}, WAIT {r['calls']['wait']}")
    if tails and probe is not None:
        import json

        import tailprobe

        print("\nWhile casting (HC_BENCH_TAILS):")
        for r in rows:
            raws = {"client": probe.raw()}
            for name in ("a", "b"):
                with open(f"{tails}/node-{name}.json", encoding="utf-8") as f:
                    raws[f"node {name}"] = json.load(f)
            for who, raw in raws.items():
                seen = tailprobe.summary(raw, *r["window"])
                print(f"  {r['kind']}, " + tailprobe.describe(who, seen))


if __name__ == "__main__":
    main()
