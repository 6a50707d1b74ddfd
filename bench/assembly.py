"""A whole plenary at scale: N participants over several nodes and a Redis Cluster (issue 13).

    python bench/assembly.py --participants 5000 --nodes 4 --voters 1000

Starts a real Redis Cluster (three masters, three replicas; config/redis-cluster-node.conf:
AOF, ``appendfsync always``; appends wait for a replica, ``wait=1``), ``--nodes`` ``hemicycle
serve`` processes on it, and an assembly of ``--voters`` member organisations with one
plenary (floor English, channels es, fr, ru), a quick poll and a formal vote. The chair and
three interpreters (one per channel, on air) are full Python clients (server/client.py) in
this process; the participants are light msgpack clients (bench/crowd.py) in ``--workers``
processes, spread round robin over the nodes, the first ``--voters`` of them their
members' representatives. Participants are idle listeners of the room's events with the
pages' heartbeat, not WebRTC peers (audio and video per listener: bench/audio.py and
bench/video.py). Phases, each with every node's CPU and the Redis masters' command counts
(INFO commandstats) before and after:

1. join storm: every participant connects at one instant; welcomed within 5 s, join p99
   (connect → welcome), all welcomed after;
2. idle: ``--idle`` seconds of heartbeats only;
3. captions: each interpreter posts ``--caption-rate`` lines/s for ``--caption-seconds``;
   event p99 from the interpreter's send to each participant's receipt; every participant
   must get every accepted line once (lost, duplicated);
4. quick poll (everyone present, ``--quick-window`` s) and 5. formal vote (the voters, in
   ``--vote-window`` s): ack p99, then the chair closes and publishes as soon as the poll is
   sealed: close → result on every page (p50, p99, max); lost (acknowledged, not in the
   result) and duplicated ballots.

Run it inside the loopback-only namespace, like the tests:
    unshare --net -- sh -c 'ip link set lo up && exec .venv/bin/python bench/assembly.py'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import random
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from crowd import (  # noqa: E402
    SECRET,
    Crowd,
    Procs,
    commandstats,
    delta,
    percentile,
    rss_kib,
    start_cluster,
    start_nodes,
    worker,
)
from fanout import cpu_seconds  # noqa: E402

from server.client import Client, CommandError  # noqa: E402
from server.node.auth import Invites  # noqa: E402

ROOM = "plenary"
CHANNELS = ("es", "fr", "ru")
COUNTRIES = ["KH", "DO", "PS", "UG", "AT", "RS", "ML", "KZ", "HU", "GN", "BR", "IN", "PH"]
FILLER = "the delegation of the member thanks the chair and supports the motion as amended"


def write_assembly(path: Path, voters: int) -> None:
    lines = ["[assembly]", 'name = "Assembly bench"', 'floor = "en"']
    lines += [f"languages = {json.dumps(list(CHANNELS))}", ""]
    for i in range(voters):
        lines += ["[[members]]", f'id = "m{i}"', f'name = "Member {i}"']
        lines += [f'country = "{COUNTRIES[i % len(COUNTRIES)]}"', ""]
    lines += ["[[rooms]]", f'id = "{ROOM}"', 'title = "Plenary"', 'floor = "en"']
    lines += [f"channels = {json.dumps(list(CHANNELS))}", ""]
    polls = (
        ("quick", "present", "Take a ten-minute break now?", ""),
        ("formal", "roll", "Approve the budget 2027?", 'quorum = { of = "roll", fraction = 0.5 }'),
    )
    for poll_id, electorate, question, quorum in polls:
        lines += ["[[rooms.polls]]", f'id = "{poll_id}"', 'kind = "yesno"']
        lines += [f'electorate = "{electorate}"', "secret = false", f'question = "{question}"']
        lines += [quorum, ""]
    path.write_text("\n".join(lines), encoding="utf-8")


# --- what the client processes do (bench/crowd.py runs them) --------------------------------


async def do_join(crowd: Crowd, args: tuple[float, float]) -> list[tuple[int, Any, int, str]]:
    start_at, timeout = args
    await asyncio.sleep(max(0.0, start_at - time.time()))
    await asyncio.gather(*(p.join(timeout) for p in crowd.people))
    return [(p.index, p.welcome_s, p.welcome_bytes, p.error) for p in crowd.people]


async def do_captions(crowd: Crowd, accepted: list[str]) -> dict[str, Any]:
    """Lines lost and duplicated per participant, and every latency; then forget them."""
    want = set(accepted)
    lost = dup = extra = counted = 0
    closed: dict[str, int] = {}
    for p in crowd.people:
        if p.welcome_s is None:
            continue
        counted += 1
        if p.ws is not None and p.ws.closed.done():  # the light client does not resume
            code = f"{p.ws.close_code} {p.ws.close_reason[:40]}".strip()
            closed[code] = closed.get(code, 0) + 1
        seen = set(p.lines)
        lost += len(want - seen)
        extra += len(seen - want)
        dup += sum(n - 1 for n in p.lines.values() if n > 1)
        p.lines.clear()
    latencies = crowd.latencies.tobytes()
    crowd.latencies = array("d")
    return {
        "lost": lost,
        "dup": dup,
        "extra": extra,
        "people": counted,
        "lat": latencies,
        "closed": closed,
    }


async def do_cast(crowd: Crowd, args: tuple[str, float, float, int, str, float]) -> list[Any]:
    """Each welcomed participant with an index below ``below`` casts one ballot at a random
    moment of the window: (voter key, ack seconds or None, refusal code)."""
    poll, start_at, window, below, key, timeout = args

    async def one(p: Any) -> tuple[str, float | None, str]:
        await asyncio.sleep(max(0.0, start_at + random.random() * window - time.time()))
        t0 = time.perf_counter()
        voter = f"{key}{p.index}"
        choice = random.choice(["yes", "no", "abstain"])
        try:
            reply = await p.request("ballot.cast", {"poll": poll, "choice": choice}, timeout)
        except TimeoutError:
            return voter, None, "no reply"
        if reply["ok"]:
            return voter, time.perf_counter() - t0, ""
        return voter, None, f"{reply['code']}: {reply['message'][:48]}"

    voters = [p for p in crowd.people if p.index < below and p.welcome_s is not None]
    return list(await asyncio.gather(*(one(p) for p in voters)))


async def do_published(crowd: Crowd, args: tuple[str, float]) -> list[float | None]:
    """When each welcomed participant got the poll's result (``None``: not within timeout)."""
    poll, timeout = args
    people = [p for p in crowd.people if p.welcome_s is not None]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(poll not in p.published for p in people):
        await asyncio.sleep(0.05)
    return [p.published.get(poll) for p in people]


HANDLERS: dict[str, Any] = {
    "join": do_join,
    "captions": do_captions,
    "cast": do_cast,
    "published": do_published,
}


def client_process(jobs: list[tuple[int, str, str]], heartbeat: bool, conn: Any) -> None:
    worker(jobs, heartbeat, conn, HANDLERS)


# --- the main process -----------------------------------------------------------------------


class Workers:
    def __init__(self, jobs: list[tuple[int, str, str]], count: int, heartbeat: bool) -> None:
        ctx = mp.get_context("spawn")
        self.pipes, self.procs = [], []
        for w in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=client_process, args=(jobs[w::count], heartbeat, child))
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    async def ask(self, name: str, args: Any, timeout: float = 600) -> list[Any]:
        for pipe in self.pipes:
            pipe.send((name, args))
        loop = asyncio.get_running_loop()

        def answer(pipe: Any) -> Any:
            if not pipe.poll(timeout):
                raise SystemExit(f"a client process did not answer {name!r} in {timeout:g} s")
            status, value = pipe.recv()
            if status != "ok":
                raise SystemExit(f"a client process failed {name!r}: {value}")
            return value

        return list(
            await asyncio.gather(*(loop.run_in_executor(None, answer, p) for p in self.pipes))
        )

    def stop(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(("stop", None))
            except OSError:
                pass
        for proc in self.procs:
            proc.join(15)
            if proc.is_alive():
                proc.kill()


def frames_handed(url: str) -> int:
    """Event frames a node has handed to its connections (``hemicycle_deliveries_total``)."""
    import urllib.request

    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("hemicycle_deliveries_total "):
                return int(float(line.split()[1]))
    return 0


class Meter:
    """Node CPU, Redis masters' CPU and command counts between two moments."""

    def __init__(
        self, nodes: list[int], redis: list[int], masters: list[int], urls: list[str]
    ) -> None:
        self.nodes, self.redis, self.masters, self.urls = nodes, redis, masters, urls
        self.clients: list[int] = []
        """The client processes: their CPU shares the machine's two cores with the nodes."""

    def sample(self) -> dict[str, Any]:
        return {
            "t": time.monotonic(),
            "cpu": [cpu_seconds(p) for p in self.nodes],
            "redis_cpu": sum(cpu_seconds(p) for p in self.redis),
            "client_cpu": sum(cpu_seconds(p) for p in self.clients),
            "frames": sum(frames_handed(url) for url in self.urls),
            "cmds": commandstats(self.masters),
            "load": os.getloadavg()[0],
        }

    @staticmethod
    def between(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        return {
            "seconds": b["t"] - a["t"],
            "cpu": [y - x for x, y in zip(a["cpu"], b["cpu"], strict=True)],
            "redis_cpu": b["redis_cpu"] - a["redis_cpu"],
            "client_cpu": b["client_cpu"] - a["client_cpu"],
            "frames": b["frames"] - a["frames"],
            "cmds": delta(b["cmds"], a["cmds"]),
            "load": (a["load"], b["load"]),
        }


async def close_and_publish(
    chair: Client, workers: Workers, poll: str, timeout: float
) -> dict[str, Any]:
    """Close, publish as soon as sealed; close → sealed, close → result on every page."""
    t_close = time.time()
    await chair.command("poll.close", {"poll": poll}, timeout=timeout)
    await chair.wait_for(lambda s: s["polls"]["polls"][poll]["sealed"], timeout)
    t_sealed = time.time()
    await chair.command("poll.publish", {"poll": poll}, timeout=timeout)
    seen = [t for share in await workers.ask("published", (poll, timeout)) for t in share]
    got = [t - t_close for t in seen if t is not None]
    result = chair.state["polls"]["polls"][poll]["result"]
    voters = [line["voter"] for line in result["roll_call"]]
    return {
        "sealed": t_sealed - t_close,
        "pages": len(got),
        "pages_missing": len(seen) - len(got),
        "page_p50": percentile(got, 50),
        "page_p99": percentile(got, 99),
        "page_max": max(got, default=float("nan")),
        "counted": voters,
    }


async def ballots(
    chair: Client,
    workers: Workers,
    meter: Meter,
    poll: str,
    below: int,
    key: str,
    window: float,
    timeout: float,
) -> dict[str, Any]:
    await chair.command("poll.open", {"poll": poll}, timeout=timeout)
    await chair.wait_for(lambda s: s["polls"]["polls"][poll]["state"] == "open", timeout)
    await asyncio.sleep(1.0)  # the opening reaches every page (they do not check: a late
    # ballot is refused with a code, counted below)
    start_at = time.time() + 0.5
    before = meter.sample()
    shares = await workers.ask("cast", (poll, start_at, window, below, key, timeout))
    after = meter.sample()
    casts = [c for share in shares for c in share]
    acks = [t for _, t, _ in casts if t is not None]
    acked = [v for v, t, _ in casts if t is not None]
    refused: dict[str, int] = {}
    for _, t, code in casts:
        if t is None:
            refused[code] = refused.get(code, 0) + 1
    out = await close_and_publish(chair, workers, poll, timeout)
    counted = out.pop("counted")
    return {
        "ballots": len(casts),
        "acked": len(acks),
        "refused": refused,
        "ack_p50": percentile(acks, 50),
        "ack_p99": percentile(acks, 99),
        "lost": len(set(acked) - set(counted)),
        "duplicated": len(counted) - len(set(counted)),
        "meter": Meter.between(before, after),
        **out,
    }


async def post_captions(
    interpreters: list[tuple[str, Client]], rate: float, seconds: float
) -> list[str]:
    """Each interpreter posts ``rate`` lines/s; the keys of the accepted lines."""
    accepted: list[str] = []

    async def one(lang: str, c: Client) -> None:
        start = time.monotonic()
        pending = []
        for n in range(1, int(rate * seconds) + 1):
            key = f"{lang}{n}"
            text = f"{time.time():.6f}|{key}|{FILLER}"
            pending.append(
                (key, asyncio.create_task(c.request("caption.post", {"lang": lang, "text": text})))
            )
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        for key, task in pending:
            try:
                reply = await asyncio.wait_for(task, 30)
            except TimeoutError:
                continue
            if reply["ok"]:
                accepted.append(key)

    await asyncio.gather(*(one(lang, c) for lang, c in interpreters))
    return accepted


def merge(counts: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            out[k] = out.get(k, 0) + v
    return out


def say(what: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {what} (load {os.getloadavg()[0]:.1f})", file=sys.stderr)


def per_node(participants: int, nodes: int) -> list[int]:
    return [len(range(i, participants, nodes)) for i in range(nodes)]


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    procs = Procs(tmp)
    (tmp / "cluster").mkdir()
    cluster = start_cluster(tmp / "cluster")
    workers: Workers | None = None
    staff: list[Client] = []
    try:
        config = tmp / "assembly.toml"
        write_assembly(config, args.voters)
        urls, pids = start_nodes(procs, cluster.url, config, args.nodes, ttl=args.node_ttl)
        masters = cluster.masters()
        meter = Meter(pids, [p.pid for p in cluster.procs.values()], masters, urls)
        invites = Invites(SECRET)
        # No library keepalive (the pages have their own heartbeat): a node busy in a storm
        # answers a ping late, and the library would close the connection for it.
        chair = await Client.connect(
            urls[0], invites.mint(room=ROOM, role="moderator", name="Chair"), ping_interval=None
        )
        staff.append(chair)
        interpreters = []
        for k, lang in enumerate(CHANNELS):
            token = invites.mint(
                room=ROOM, role="interpreter", name=f"Booth {lang}", booth=lang, pair=["en", lang]
            )
            c = await Client.connect(urls[(k + 1) % len(urls)], token, ping_interval=None)
            await c.command("air.take", {"lang": lang})
            interpreters.append((lang, c))
            staff.append(c)
        jobs = [
            (
                i,
                urls[i % len(urls)],
                invites.mint(
                    room=ROOM,
                    role="participant",
                    name=f"Delegate {i}",
                    pid=f"x{i}",
                    **({"org": f"m{i}"} if i < args.voters else {}),
                ),
            )
            for i in range(args.participants)
        ]
        workers = Workers(jobs, args.workers, not args.no_heartbeat)
        meter.clients = [p.pid for p in workers.procs]
        out: dict[str, Any] = {
            "nodes_rss0": [rss_kib(p) for p in pids],
            "per_node": per_node(args.participants, args.nodes),
        }

        # 1. the join storm
        say(f"join storm: {args.participants} participants")
        start_at = time.time() + 3.0 + args.participants / 2000  # the client processes start
        await asyncio.sleep(max(0.0, start_at - time.time()))
        before = meter.sample()
        shares = await workers.ask("join", (start_at, args.join_deadline), args.join_deadline + 60)
        welcomed_at = meter.sample()
        joined = [j for share in shares for j in share]
        took = [t for _, t, _, _ in joined if t is not None]
        errors: dict[str, int] = {}
        for _, t, _, e in joined:
            if t is None:
                errors[e] = errors.get(e, 0) + 1
        everyone = len(took) + 1 + len(interpreters)
        try:  # every node folded every join: the chair's replica shows them all
            await chair.wait_for(lambda s: len(s["core"]["people"]) >= everyone, 30)
        except TimeoutError:
            pass
        # A connection is welcomed before its join is logged: the storm's cost runs until
        # the last join is folded, so the meter reads on until the chair sees everyone.
        after = meter.sample()
        out["join"] = {
            "welcomed": len(took),
            "within_5s": sum(1 for t in took if t <= 5.0),
            "all": max(took, default=float("nan")),
            "p50": percentile(took, 50),
            "p99": percentile(took, 99),
            "errors": errors,
            "chair_sees": len(chair.state["core"]["people"]) - 1 - len(interpreters),
            "welcome_max": max((b for _, _, b, _ in joined), default=0),
            "meter": Meter.between(before, after),
            "welcomed_meter": Meter.between(before, welcomed_at),
        }
        out["nodes_rss"] = [rss_kib(p) for p in pids]

        # 2. idle (heartbeats only)
        say(f"joined: {out['join']['welcomed']} welcomed, p99 {out['join']['p99']:.2f} s")
        await asyncio.sleep(2.0)
        before = meter.sample()
        await asyncio.sleep(args.idle)
        out["idle"] = {"meter": Meter.between(before, meter.sample())}

        # 3. captions
        say("captions")
        before = meter.sample()
        accepted = await post_captions(interpreters, args.caption_rate, args.caption_seconds)
        await asyncio.sleep(args.drain)
        after = meter.sample()
        reports = await workers.ask("captions", accepted)
        lat = array("d")
        for r in reports:
            lat.frombytes(r["lat"])
        out["captions"] = {
            "sent": len(interpreters) * int(args.caption_rate * args.caption_seconds),
            "accepted": len(accepted),
            "people": sum(r["people"] for r in reports),
            "deliveries": len(lat),
            "p50": percentile(lat, 50),
            "p99": percentile(lat, 99),
            "max": max(lat, default=float("nan")),
            "lost": sum(r["lost"] for r in reports),
            "duplicated": sum(r["dup"] for r in reports),
            "unacknowledged_delivered": sum(r["extra"] for r in reports),
            "closed_after_welcome": merge(r["closed"] for r in reports),
            "meter": Meter.between(before, after),
        }

        # 4. the quick poll (everyone present), 5. the formal vote (the members)
        polls = (
            ("quick", args.participants, "x", args.quick_window),
            ("formal", args.voters, "m", args.vote_window),
        )
        for poll, below, key, window in polls:
            say(f"{poll} poll")
            try:
                out[poll] = await ballots(
                    chair, workers, meter, poll, below, key, window, args.timeout
                )
            except (TimeoutError, CommandError, ConnectionError) as exc:
                # A chair's command unanswered (or refused): where the run broke, reported.
                out["broke"] = f"{poll} poll: the chair's command failed: {exc!r}"
                say(out["broke"])
                break
        return out
    finally:
        for c in staff:
            try:
                await asyncio.wait_for(c.close(), 10)
            except Exception:
                pass
        if workers is not None:
            workers.stop()
        procs.stop_all()
        cluster.stop()


# --- the report -----------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def report(args: argparse.Namespace, r: dict[str, Any], load0: float) -> str:
    n, nodes = args.participants, args.nodes
    lines = [
        f"\nAssembly bench: {n:,} participants ({args.voters:,} voters) over {nodes} nodes, "
        f"Redis Cluster 3+3 (AOF always, wait=1), {args.workers} client processes"
        + (f", node heartbeat TTL {args.node_ttl:g} s" if args.node_ttl else ""),
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average before {load0:.2f}",
        "",
    ]
    j = r["join"]
    lines += [
        "| phase | result |",
        "|---|---|",
        f"| join storm | {j['welcomed']:,}/{n:,} welcomed, {j['within_5s']:,} within 5 s, all "
        f"after {j['all']:.2f} s; p50 {ms(j['p50'])}, **p99 {ms(j['p99'])}**; largest "
        f"welcome {j['welcome_max'] / 1024:,.0f} KiB; failed {j['errors'] or 0}; "
        f"the chair's page lists {j['chair_sees']:,} of them |",
    ]
    c = r["captions"]
    lines.append(
        f"| captions | {c['accepted']}/{c['sent']} lines accepted, {c['deliveries']:,} "
        f"deliveries to {c['people']:,} participants; p50 {c['p50']:,.1f} ms, **p99 "
        f"{c['p99']:,.1f} ms**, max {c['max']:,.0f} ms; lost {c['lost']}, duplicated "
        f"{c['duplicated']}; connections closed after their welcome (code: n) "
        f"{c['closed_after_welcome'] or 0} |"
    )
    for name in ("quick", "formal"):
        if name not in r:
            continue
        b = r[name]
        lines.append(
            f"| {name} {'poll' if name == 'quick' else 'vote'} | {b['acked']:,}/{b['ballots']:,} "
            f"acked (refused {b['refused'] or 0}); ack p50 {ms(b['ack_p50'])}, **p99 "
            f"{ms(b['ack_p99'])}**; close → sealed {ms(b['sealed'])}; close → result on "
            f"{b['pages']:,} pages p50 {ms(b['page_p50'])}, p99 {ms(b['page_p99'])}, max "
            f"{ms(b['page_max'])} (missing {b['pages_missing']}); lost {b['lost']}, "
            f"duplicated {b['duplicated']} |"
        )
    if "broke" in r:
        lines += ["", f"**The run broke here**: {r['broke']}"]
    lines += [
        "",
        "Server cost per phase (CPU seconds of each node; Redis: the six processes; clients: "
        "the client processes, which share the two cores):",
        "",
    ]
    lines.append(
        "| phase | wall | load | node CPU s (each) | node CPU per unit | Redis CPU s | "
        "clients CPU s | event frames sent | Redis calls on masters | per event | top commands |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    per = r["per_node"]
    units = {
        "join": (n, "join"),
        "idle": (r["join"]["welcomed"], "participant·s"),
        "captions": (c["accepted"], "line"),
        "quick": (r.get("quick", {}).get("acked", 0), "ballot"),
        "formal": (r.get("formal", {}).get("acked", 0), "ballot"),
    }
    for name, (events, unit) in units.items():
        if name not in r:
            continue
        m = r[name]["meter"]
        calls = sum(m["cmds"].values())
        each = " / ".join(f"{x:.2f}" for x in m["cpu"])
        if name == "idle":
            per_s = sum(m["cpu"]) / m["seconds"] / max(1, events) * 1e6
            unit_cost = f"{per_s:,.1f} µs/s per welcomed participant"
            per_event = "–"
        elif name == "captions":
            deliveries = max(1, c["deliveries"])
            unit_cost = f"{sum(m['cpu']) / deliveries * 1e6:,.1f} µs per delivery"
            per_event = f"{calls / max(1, events):,.1f}"
        else:
            unit_cost = f"{sum(m['cpu']) / max(1, events) * 1e3:,.2f} ms per {unit} (all nodes)"
            per_event = f"{calls / max(1, events):,.1f}"
        top = ", ".join(f"{k} {v:,}" for k, v in list(m["cmds"].items())[:5])
        lines.append(
            f"| {name} | {m['seconds']:.1f} s | {m['load'][0]:.1f}→{m['load'][1]:.1f} | {each} "
            f"| {unit_cost} | {m['redis_cpu']:.2f} | {m.get('client_cpu', 0):.2f} "
            f"| {m.get('frames', 0):,} | {calls:,} "
            f"| {per_event} | {top} |"
        )
    rss = " / ".join(
        f"{(b - a) / max(1, k):,.0f}"
        for a, b, k in zip(r["nodes_rss0"], r["nodes_rss"], per, strict=True)
    )
    lines += [
        "",
        f"Participants per node: {' / '.join(str(k) for k in per)}; node memory after the "
        f"joins: {' / '.join(f'{x / 1024:,.0f}' for x in r['nodes_rss'])} MiB, growth per "
        f"participant on the node: {rss} KiB",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--participants", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--voters", type=int, default=1000, help="members on the roll")
    parser.add_argument("--workers", type=int, default=4, help="client processes")
    parser.add_argument("--join-deadline", type=float, default=120.0)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle measured")
    parser.add_argument("--caption-rate", type=float, default=2.0, help="lines/s per channel")
    parser.add_argument("--caption-seconds", type=float, default=10.0)
    parser.add_argument("--drain", type=float, default=3.0, help="seconds for the last lines")
    parser.add_argument("--quick-window", type=float, default=5.0)
    parser.add_argument("--vote-window", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for a reply")
    parser.add_argument("--no-heartbeat", action="store_true", help="participants never ping")
    parser.add_argument(
        "--node-ttl",
        type=float,
        help="seconds a node's heartbeat lives (default: the node's own, 6 s); on a machine "
        "too loaded for the nodes to beat in time, the others retire their connections",
    )
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--keep", type=Path, help="keep the logs in a directory under this one")
    args = parser.parse_args()
    if args.voters > args.participants:
        parser.error("--voters cannot exceed --participants (each voter is a participant)")
    load0 = os.getloadavg()[0]
    if args.keep:  # the nodes' and Redis's logs stay there
        args.keep.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(
            run(args, Path(tempfile.mkdtemp(prefix="hc-assembly-", dir=args.keep)))
        )
    else:
        with tempfile.TemporaryDirectory(prefix="hc-assembly-") as tmp:
            result = asyncio.run(run(args, Path(tmp)))
    print(report(args, result, load0), flush=True)
    if args.json:
        args.json.write_text(
            json.dumps({"args": vars(args) | {"json": None}, **result}, default=str)
        )


if __name__ == "__main__":
    main()
