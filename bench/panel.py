"""The seed's panel across two nodes: five cameras, 232 viewers, one Redis (issue 10).

    python bench/panel.py --viewers 232 --seconds 20

Five people on stage (the chair and four panelists, put there by the chair: a room state
folded by the real ``fold.fold``) publish simulcast cameras on **node A**; the viewers are
split over node A and **node B** (116 + 116). Each viewer shows the speaker in the top
quality (h, 720p ~1.5 Mbit/s) and the four others as thumbnails (l, 180p ~0.15 Mbit/s), so
node B's viewers get video that crossed the bus, and only the layers some viewer on node B
needs should cross (the speaker's h, the others' l; no m, no other h).

What is real, per node process:

- ``server.media.video.VideoRoom`` itself: the ``video.show`` frame, ingest checks (first
  arrival, codec, size, flood and bitrate buckets, RID layer, stage right), local
  ``VideoSource`` → ``VideoOutlet`` fan-out, keyframe requests (merged, across the bus),
  the sources/needs announcements, exactly-needed bus subscriptions and what crosses;
- the bus: ``BusLink`` over ``RedisBus`` on a real ``redis-server`` (started here on a
  free port in a temp directory), one channel per crossing layer;
- the way out: each tile is a ``vhook.VideoSender`` (RTP header, libsrtp protect with its
  own session, ``sendto`` from a socket per viewer, as a viewer's ICE pair has), to a
  **receiving child process per node** with one UDP socket per viewer (4 MiB buffers) that
  counts datagrams per viewer and tile (by SSRC), so loss is counted at the receiver;
- who may publish: ``stage.video_publishers`` of the folded state, as after every fold
  (the entries are folded once in each node process, not read from the Redis log).

What is simulated, and why: the publishers' and viewers' peer connections. Five aiortc
cameras and 232 aiortc viewers (ICE, DTLS, per-packet decryption) would cost the 2-core
machine more than the forwarding measured here; so a camera is the pre-encoded libvpx
trace of bench/video.py (720p/360p/180p, grain; a keyframe when the room sends it a PLI)
packetized into ``RtpPacket`` s with the RID extension and handed to ``VideoRoom.ingest``
(aiortc's SRTP unprotect and receiver are not run), and a viewer's sender has SRTP keys of
its own instead of DTLS-made ones (bench/video.py's ``BenchSender``: no header extensions).
Cameras send their frames staggered over the frame interval (they are not synchronised).

Measured: per tile, packets *wanted* (every packet of its layer the camera sent, from the
keyframe the tile started at to the end: a drop anywhere counts), *sent* (its VideoSender)
and *received* (the child); server-added latency per packet, from the arrival of its frame
at node A to the ``sendto`` of the last viewer on a node (for node B, across Redis); each
node's CPU; which layers crossed and at what bitrate. PASS when node A took its cameras'
frames in real time (within 2 %: the trace waits for it, a real camera would not), every
tile of every viewer received every packet it wanted, on one layer from start to end, and
exactly the needed layers crossed. Packets that are late are waited for (until the bus is
quiet) and show in the latency, not as loss.

Run it inside a loopback-only network namespace, like the tests::

    unshare -r -n -- sh -c 'ip link set lo up && exec .venv/bin/python bench/panel.py'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import mmsg  # noqa: E402
from aiortc.rtp import RtpPacket  # noqa: E402
from video import FPS, FRAMES, RCVBUF, BenchSender, trace  # noqa: E402

from server import fold, stage  # noqa: E402
from server.media import vp8  # noqa: E402
from server.media.forward import QUALITIES, VideoOutlet, VideoPacket  # noqa: E402
from server.media.setup import MediaConfig  # noqa: E402
from server.media.video import VideoRoom  # noqa: E402
from server.media.vpeers import VideoConfig, VideoPublisher, Viewer, VPeers  # noqa: E402
from server.node.backends import open_backends  # noqa: E402
from server.node.metrics import Metrics  # noqa: E402
from server.types import RoomConfig  # noqa: E402

ROOM = "plenary"
PANEL = ("chair", "kh", "do", "ps", "ug")
"""The five on stage: the chair (on stage while online) and four panelists."""
SPEAKER = "kh"
REAL_TIME = 0.98
"""Node A must take its cameras' frames at this fraction of real time or better: the
cameras here wait for it, where real ones would not."""
LEAD = 1.0
"""The cameras publish this long before the viewers' pages ask their tiles (s)."""


def panel_state() -> Any:
    """The room as every node folds it: the chair and four panelists joined, the chair
    puts the four on stage."""
    state = fold.new_state(RoomConfig(id=ROOM, title="Plenary", floor="en", channels=("es",)))
    entries: list[tuple[str, str, str, dict[str, Any]]] = []
    for pid in PANEL:
        role = "moderator" if pid == "chair" else "panelist"
        args = {"pid": pid, "name": pid.upper(), "role": role, "conn": f"a~{pid}"}
        entries.append(("node", "system", "join", args))
    entries += [("chair", "moderator", "stage.add", {"pid": pid}) for pid in PANEL[1:]]
    for n, (pid, role, cmd, args) in enumerate(entries, 1):
        entry = {"cid": f"c{n}", "actor": {"pid": pid, "role": role, "conn": None}, "cmd": cmd}
        outcome = fold.fold(state, f"{n}-0", {**entry, "args": args, "ts": 1_000_000 + n})
        if outcome.error is not None:
            raise SystemExit(f"the panel's state: {cmd} refused: {outcome.error}")
    if set(stage.video_publishers(state)) != set(PANEL):
        raise SystemExit(f"not the five on stage: {stage.video_publishers(state)}")
    return state


SWEEP = 0.005
"""Seconds between the receiving child's sweeps of its sockets."""


# -- the receiving child: one socket per viewer, datagrams counted per SSRC (per tile) --------


def receive(n: int, conn: Any) -> None:
    """Send the sockets' ports, count until told to stop and the sockets are quiet, send
    the counts (per viewer: SSRC → datagrams) and this process's CPU seconds.

    It sweeps the sockets every few milliseconds with ``recvmmsg`` (bench/mmsg.py) rather
    than waking per datagram: what the node sends is counted just the same (the buffers
    hold 4 MiB each), and the viewers' stand-in leaves the two cores to the nodes."""
    socks = mmsg.sockets(n, RCVBUF)
    conn.send([s.getsockname()[1] for s in socks])
    got: list[dict[bytes, int]] = [{} for _ in range(n)]
    receiver = mmsg.Receiver()
    stopping = False
    idle_since = None
    while True:
        time.sleep(SWEEP)
        if not stopping and conn.poll():
            conn.recv()
            stopping = True
        seen = 0
        for sock, tally in zip(socks, got, strict=True):

            def count(datagram: memoryview, tally: dict[bytes, int] = tally) -> None:
                ssrc = datagram[8:12].tobytes()  # in the clear in SRTP (RFC 3711 §3.1)
                tally[ssrc] = tally.get(ssrc, 0) + 1

            seen += receiver.drain(sock, count)
        if stopping and not seen:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 0.5:
                break
        elif seen:
            idle_since = None
    counts = [{int.from_bytes(k, "big"): v for k, v in g.items()} for g in got]
    conn.send({"got": counts, "cpu": time.process_time()})


# -- one node ---------------------------------------------------------------------------------


class Hub:
    """What a VideoRoom reads of its ``RoomHub``: the room, node, folded state, bus, metrics."""

    def __init__(self, node: str, state: Any, backends: Any) -> None:
        self.room, self.node, self.state, self.backends = ROOM, node, state, backends
        self.metrics = Metrics()
        self.sinks: tuple[Any, ...] = ()


class Person:
    """A connection as the media layer sees it (``signalling.Peer``)."""

    def __init__(self, pid: str, conn: str) -> None:
        self.person = {"pid": pid, "conn": conn}

    def send(self, message: dict[str, Any]) -> None:
        return None


class BenchRoom(VideoRoom):
    """The node's VideoRoom, timing each packet's fan-out and counting what it publishes."""

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub, MediaConfig(allow_loopback=True), VideoConfig())  # type: ignore[arg-type]
        self.arrived = 0.0
        """When the frame being ingested arrived (a camera's frame comes as one burst)."""
        self.recording = False
        self.pushed: list[tuple[str, int, float, float]] = []
        """(publisher layer, seq, arrival here, after the last viewer's sendto) per packet
        that went to at least one viewer."""
        self.arrivals: dict[tuple[str, int], float] = {}
        self.crossed: dict[str, list[int]] = {}
        """Layer → [packets, bytes] published on the bus while recording."""
        send = self.bus.send

        self.outbox_max = 0
        """The most frames waiting in the bus link's outbox at once (while recording)."""

        def counted(layer: str, frame: Any) -> None:
            send(layer, frame)
            if self.recording:
                self.outbox_max = max(self.outbox_max, len(self.bus._outbox))
                c = self.crossed.setdefault(layer, [0, 0])
                c[0] += 1
                c[1] += len(self.bus._outbox[-1][1])

        self.bus.send = counted  # type: ignore[method-assign]

    def _push(self, name: str, p: VideoPacket, now: float) -> None:
        source = self.sources.get(name)
        if source is None:
            return
        local = name in self.publishers
        if local:
            self.arrivals[(p.pub, p.seq)] = self.arrived
        sent = source.push(p, now)
        self.metrics.video_out.inc(sent)
        if sent and self.recording:
            self.pushed.append((p.pub, p.seq, self.arrived if local else now, time.monotonic()))


class Tile(VideoOutlet):
    """An outlet that notes the packet it started at: (publisher layer, the camera's RTP
    sequence number), so a packet dropped anywhere after the camera counts as lost."""

    first: tuple[str, int] | None = None

    def _rebase(self, p: VideoPacket, now: float) -> None:
        if self.first is None:
            self.first = (p.pub, p.rtp)
        super()._rebase(p, now)


class Camera:
    """A simulcast camera on this node: the trace's frames as RTP with the RID extension,
    into ``VideoRoom.ingest``; a PLI from the room makes its next frame of that layer a key."""

    def __init__(self, room: BenchRoom, pid: str, frames: dict[str, Any]) -> None:
        self.room, self.frames = room, frames
        peer = Person(pid, f"a~{pid}")
        self.pub = VideoPublisher(
            peer, "camera", None, room.config, room.may_publish(pid, "camera")
        )  # type: ignore[arg-type]
        self.pub.rids, self.pub.pts, self.pub.receiver = list(QUALITIES), {96: "vp8"}, self
        self._RTCRtpReceiver__rtcp_ssrc = None  # no REMB toward it (vhook.send_remb)
        self.ssrc = {q: random.randrange(1, 1 << 32) for q in QUALITIES}
        self.seq = {q: random.randrange(1 << 16) for q in QUALITIES}
        self.pic = {q: random.randrange(1 << 15) for q in QUALITIES}
        self.ts0 = random.randrange(1 << 32)
        self.index = dict.fromkeys(QUALITIES, 0)
        self.want = dict.fromkeys(QUALITIES, False)
        self.plis = 0
        peers = VPeers()
        peers.publishers["camera"] = self.pub
        room.peers[peer.person["conn"]] = peers
        room.publishers[self.pub.source] = self.pub

    async def _send_rtcp_pli(self, ssrc: int) -> None:
        for q, s in self.ssrc.items():
            if s == ssrc:
                self.want[q] = True
                self.plis += 1

    def frame(self, n: int) -> None:
        """Frame ``n`` of every layer, as it arrives: one burst of packets."""
        room, pub = self.room, self.pub
        room.arrived = time.monotonic()
        for q in QUALITIES:
            i = 0 if self.want[q] else self.index[q]
            self.want[q] = False
            self.index[q] = 1 + i % (FRAMES - 1)  # the keyframe once, then the deltas looped
            payloads = vp8.packetize(self.frames[q][i][0], self.pic[q], tl0picidx=n, tid=0)
            self.pic[q] = (self.pic[q] + 1) & 0x7FFF
            for j, payload in enumerate(payloads):
                self.seq[q] = seq = (self.seq[q] + 1) & 0xFFFF
                packet = RtpPacket(
                    payload_type=96,
                    sequence_number=seq,
                    timestamp=(self.ts0 + 3000 * n) & 0xFFFFFFFF,
                    ssrc=self.ssrc[q],
                    marker=j == len(payloads) - 1,
                    payload=payload,
                )
                packet.extensions.rtp_stream_id = q
                if room._first(pub, packet.ssrc, seq):  # what vhook.tap_video asks first
                    room.ingest(pub, packet)


def shows() -> list[dict[str, Any]]:
    """A viewer's tiles: the speaker large (h), the four others as thumbnails (l)."""
    others = [pid for pid in PANEL if pid != SPEAKER]
    return [{"slot": 0, "source": f"{SPEAKER}:camera", "quality": "h"}] + [
        {"slot": n, "source": f"{pid}:camera", "quality": "l"} for n, pid in enumerate(others, 1)
    ]


def node_process(name: str, viewers: int, redis_url: str, cameras: bool, conn: Any) -> None:
    asyncio.run(node_run(name, viewers, redis_url, cameras, conn))


async def node_run(name: str, viewers: int, redis_url: str, cameras: bool, conn: Any) -> None:
    ctx = mp.get_context("spawn")
    receiver, end_of_receiver = ctx.Pipe()
    child = ctx.Process(target=receive, args=(viewers, end_of_receiver))
    child.start()
    ports = receiver.recv()
    frames = trace()
    backends = open_backends(redis_url)
    room = BenchRoom(Hub(name, panel_state(), backends))
    loop = asyncio.get_running_loop()
    async with room:
        cams = [Camera(room, pid, frames) for pid in PANEL] if cameras else []
        people: list[tuple[Person, list[Tile]]] = []
        for i, port in enumerate(ports):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, RCVBUF)
            peer = Person(f"{name}{i}", f"{name}~v{i}")
            tiles = [Tile(peer.person["pid"], BenchSender(sock, port), room._ask) for _ in PANEL]
            peers = VPeers()
            peers.viewer = Viewer(peer, None, tiles)  # type: ignore[arg-type]
            room.peers[peer.person["conn"]] = peers
            people.append((peer, tiles))
        conn.send({"ready": True})
        start, warmup, seconds = await loop.run_in_executor(None, conn.recv)
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        measure, end = start + warmup, start + warmup + seconds
        cpu0 = wall0 = None
        sent0 = 0
        n = 0
        shown = False
        while (now := time.monotonic()) < end:
            if not shown and now >= start + LEAD:
                shown = True
                for peer, _ in people:  # each viewer's page asks its tiles (video.show)
                    frame = {"type": "video.show", "cid": "c1", "slots": shows()}
                    await room.handle(peer, frame)  # type: ignore[arg-type]
            if cpu0 is None and now >= measure:
                cpu0, wall0 = time.process_time(), now
                sent0 = sum(t.sink.sent for _, tiles in people for t in tiles)
                room.recording = True
            for k, cam in enumerate(cams):  # staggered: camera k at k/5 of the interval
                # Yield even when behind: a node takes packets one callback at a time.
                await asyncio.sleep(max(0.0, start + (n + k / len(cams)) / FPS - time.monotonic()))
                cam.frame(n)
            if not cams:
                await asyncio.sleep(0.05)
            n += 1
        assert cpu0 is not None and wall0 is not None
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        sent = sum(t.sink.sent for _, tiles in people for t in tiles) - sent0
        room.recording = False
        # The last packets cross and go out: wait until the bus has been quiet for 1.5 s
        # (what lags behind is late, not lost; the latency says how late).
        heard, quiet = -1.0, 0.0
        while quiet < 1.5 and time.monotonic() - end < 60:
            await asyncio.sleep(0.25)
            now_heard = room.metrics.registry.get_sample_value(
                "hemicycle_video_bus_frames_total", {"direction": "in"}
            )
            quiet = quiet + 0.25 if now_heard == heard else 0.0
            heard = now_heard or 0.0
        receiver.send("stop")
        got = await loop.run_in_executor(None, receiver.recv)
        child.join()
        room.peers.clear()  # no peer connections to close: the bench holds none
        metric = room.metrics.registry.get_sample_value
        conn.send(
            {
                "node": name,
                "cores": cpu / wall,
                "us_per_packet": cpu / max(1, sent) * 1e6,
                "packets_per_s": sent / wall,
                "behind": (n / FPS) / (end - start) if cams else 1.0,
                "receiver_cpu": got["cpu"],
                "tiles": [
                    [
                        (
                            t.first,
                            t.layer,
                            t.switches,
                            t.sink.sent,
                            got["got"][i].get(t.sink._ssrc, 0),
                        )
                        for t in tiles
                    ]
                    for i, (_, tiles) in enumerate(people)
                ],
                "pushed": room.pushed,
                "arrivals": room.arrivals if cams else {},
                "last": {f"{c.pub.pub}:{q}": c.seq[q] for c in cams for q in QUALITIES},
                "crossed": room.crossed,
                "outbox_max": room.outbox_max,
                "bus_dropped": metric("hemicycle_video_bus_frames_total", {"direction": "dropped"})
                or 0,
                "subscribed": sorted(room.bus.subscribed),
                "bus_in": metric("hemicycle_video_bus_frames_total", {"direction": "in"}) or 0,
                "bus_lost": metric("hemicycle_video_bus_lost_total") or 0,
                "plis": sum(c.plis for c in cams),
                "dropped_in": {
                    o: metric("hemicycle_video_packets_in_total", {"outcome": o}) or 0
                    for o in ("flood", "size", "codec", "off_stage", "malformed", "unknown_layer")
                },
            }
        )
    await backends.close()


# -- the orchestrator -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    port = free_port()
    # fmt: off
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp), "--save", "",
         "--appendonly", "no", "--logfile", str(tmp / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    # fmt: on
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


def redis_cpu(port: int) -> float:
    import redis

    info = redis.Redis(port=port).info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def short(layer: str) -> str:
    """``kh:camera:h`` → ``kh:h``."""
    return layer.split(":", 1)[0] + ":" + layer.rsplit(":", 1)[1]


def pick(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def summarise(
    result: dict[str, Any], arrivals: dict[Any, float], last: dict[str, int], measure: float
) -> dict[str, Any]:
    """One node's row: viewers, per-tile packets wanted/sent/received (h and l), loss,
    latency from the frame's arrival at node A to this node's last sendto."""
    out: dict[str, Any] = {"node": result["node"], "viewers": len(result["tiles"])}
    bad: list[str] = []
    for kind, slots in (("h", [0]), ("l", [1, 2, 3, 4])):
        wanted = sent = got = 0
        per_viewer = []
        for i, tiles in enumerate(result["tiles"]):
            w = s = g = 0
            for slot in slots:
                first, layer, switches, t_sent, t_got = tiles[slot]
                if first is None or layer != kind or switches != 1:
                    bad.append(f"viewer {i} tile {slot}: layer {layer}, {switches} switches")
                    continue
                w += (last[first[0]] - first[1]) % (1 << 16) + 1
                s += t_sent
                g += t_got
            per_viewer.append(w)
            wanted, sent, got = wanted + w, sent + s, got + g
        n = max(1, len(result["tiles"]))
        out[kind] = {
            "wanted": wanted / n,
            "sent": sent / n,
            "received": got / n,
            "lost": wanted - got,
            "unsent": wanted - sent,
        }
    lat = sorted(
        (done - arrivals[(pub, seq)]) * 1000
        for pub, seq, _, done in result["pushed"]
        if (pub, seq) in arrivals and arrivals[(pub, seq)] >= measure
    )
    hop = sorted(
        (at - arrivals[(pub, seq)]) * 1000
        for pub, seq, at, _ in result["pushed"]
        if (pub, seq) in arrivals and arrivals[(pub, seq)] >= measure
    )
    out.update(p50=pick(lat, 0.5), p99=pick(lat, 0.99), hop50=pick(hop, 0.5), hop99=pick(hop, 0.99))
    out["bad"] = bad
    return out


def run(viewers: list[int], seconds: float, warmup: float) -> dict[str, Any]:
    trace()  # encode (or read the cached trace) once, before the nodes start
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="hc-panel-") as tmp:
        redis_proc, rport = start_redis(Path(tmp))
        ctx = mp.get_context("spawn")
        nodes, pipes = [], []
        try:
            for name, n in zip("ab", viewers, strict=True):
                parent, child = ctx.Pipe()
                proc = ctx.Process(
                    target=node_process,
                    args=(name, n, f"redis://127.0.0.1:{rport}/0", name == "a", child),
                )
                proc.start()
                nodes.append(proc)
                pipes.append(parent)
            for pipe in pipes:
                if not pipe.poll(300):
                    raise SystemExit("a node did not get ready in 300 s")
                pipe.recv()
            start = time.monotonic() + 0.5
            for pipe in pipes:
                pipe.send((start, warmup, seconds))
            rcpu0 = redis_cpu(rport)
            time.sleep(warmup)
            load_during = os.getloadavg()
            results = []
            for pipe in pipes:
                if not pipe.poll(seconds + 300):
                    raise SystemExit("a node did not report")
                results.append(pipe.recv())
            rcpu = redis_cpu(rport) - rcpu0
        finally:
            for proc in nodes:
                proc.join(30)
                if proc.is_alive():
                    proc.kill()
            redis_proc.terminate()
            redis_proc.wait(10)
    a = results[0]
    rows = [summarise(r, a["arrivals"], a["last"], start + warmup) for r in results]
    for row, r in zip(rows, results, strict=True):
        row.update(cores=r["cores"], behind=r["behind"], receiver_cpu=r["receiver_cpu"])
        row.update(us_per_packet=r["us_per_packet"], packets_per_s=r["packets_per_s"])
        row.update(subscribed=r["subscribed"], bus_in=r["bus_in"], bus_lost=r["bus_lost"])
        row.update(dropped_in=r["dropped_in"], plis=r["plis"], outbox_max=r["outbox_max"])
        row.update(bus_dropped=r["bus_dropped"])
    crossed = {short(layer): c[1] * 8 / seconds / 1e6 for layer, c in sorted(a["crossed"].items())}
    expected = {f"{SPEAKER}:h"} | {f"{pid}:l" for pid in PANEL if pid != SPEAKER}
    return {
        "rows": rows,
        "crossed_mbit": crossed,
        "crossed_ok": set(crossed) == expected,
        "expected": sorted(expected),
        "redis_cores": rcpu / (seconds + warmup),
        "load_before": load0,
        "load_during": load_during,
        "load_after": os.getloadavg(),
        "seconds": seconds,
        "warmup": warmup,
    }


def report(r: dict[str, Any], real_time: float = REAL_TIME) -> bool:
    print(
        "| node | viewers | h packets wanted/sent/received per viewer | l packets (4 tiles) "
        "wanted/sent/received per viewer | lost | p50 / p99 ms | cores |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in r["rows"]:
        h, low = row["h"], row["l"]
        print(
            f"| {row['node'].upper()} | {row['viewers']} | "
            f"{h['wanted']:.0f} / {h['sent']:.0f} / {h['received']:.0f} | "
            f"{low['wanted']:.0f} / {low['sent']:.0f} / {low['received']:.0f} | "
            f"{h['lost'] + low['lost']} | {row['p50']:.2f} / {row['p99']:.2f} | "
            f"{row['cores']:.2f} |"
        )
    b = r["rows"][1]
    print(
        f"\ncrossed A -> B (Mbit/s on the bus, {r['seconds']:g} s): "
        + ", ".join(f"{k} {v:.2f}" for k, v in r["crossed_mbit"].items())
        + f" = {sum(r['crossed_mbit'].values()):.2f}; needed {', '.join(r['expected'])}"
    )
    print(
        f"node B: subscribed {', '.join(short(s) for s in b['subscribed'])}; "
        f"bus hop A->B p50/p99 {b['hop50']:.2f}/{b['hop99']:.2f} ms; "
        f"bus frames lost {b['bus_lost']:.0f}"
    )
    for row in r["rows"]:
        print(
            f"node {row['node'].upper()}: camera loop {row['behind']:.3f}x real time, "
            f"{row['packets_per_s']:.0f} packets/s to viewers at {row['us_per_packet']:.1f} µs "
            f"CPU each, "
            f"receiver child {row['receiver_cpu']:.1f} s CPU, keyframes asked {row['plis']}, "
            f"dropped on ingest {row['dropped_in']}"
        )
        for line in row["bad"][:5]:
            print(f"  {line}")
    a = r["rows"][0]
    print(
        f"node A's bus outbox: at most {a['outbox_max']} frames waiting, "
        f"{a['bus_dropped']:.0f} dropped (full)"
    )
    print(f"redis-server: {r['redis_cores']:.3f} cores")
    print(
        "load average (1, 5, 15 min): before "
        + ", ".join(f"{x:.2f}" for x in r["load_before"])
        + "; during "
        + ", ".join(f"{x:.2f}" for x in r["load_during"])
        + "; after "
        + ", ".join(f"{x:.2f}" for x in r["load_after"])
    )
    total = sum(row["viewers"] for row in r["rows"])
    ok = (
        a["behind"] >= real_time
        and all(
            row["h"]["lost"] == 0 and row["l"]["lost"] == 0 and not row["bad"] for row in r["rows"]
        )
        and all(row["h"]["wanted"] > 0 and row["l"]["wanted"] > 0 for row in r["rows"])
        and r["crossed_ok"]
    )
    if a["behind"] < real_time:
        print(
            f"node A fell behind real time ({a['behind']:.3f}x < {real_time}): its cameras' "
            "frames came late, where a real node would have lost them in its socket buffers"
        )
    print(f"{'PASS' if ok else 'FAIL'}: {total} viewers across two nodes without loss")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--viewers", type=int, default=232, help="split over the two nodes")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured")
    parser.add_argument(
        "--warmup", type=float, default=4.0, help="cameras on, viewers joining; not measured"
    )
    parser.add_argument(
        "--real-time",
        type=float,
        default=REAL_TIME,
        help="the fraction of real time node A must keep (0: any; the smoke test's)",
    )
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()
    if os.environ.get("HEMICYCLE_BENCH_ANY_NET") is None:
        out = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
        if any(line.split()[1] != "lo" for line in out.splitlines() if line.strip()):
            sys.exit(
                "run inside a loopback-only namespace: unshare -r -n -- sh -c "
                "'ip link set lo up && exec python bench/panel.py'"
            )
    a = args.viewers // 2
    r = run([args.viewers - a, a], args.seconds, args.warmup)
    ok = r["pass"] = report(r, args.real_time)
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1, default=str))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
