"""Recording: Ogg/Opus files by remuxing, on the wall clock, listed and served to moderators."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import httpx
import pytest

from server.client import Client
from server.media.oggopus import SILENCE, OggOpusWriter, Track, ogg_crc, opus_samples

from .audio_helpers import listen, loopback_ice, opus_tone, publish, tagged  # noqa: F401
from .conftest import timeout
from .waiting import eventually


def packets_of(data: bytes) -> list[bytes]:
    with av.open(io.BytesIO(data), format="ogg") as container:
        return [bytes(p) for p in container.demux(audio=0) if p.size]


def decoded_seconds(data: bytes) -> float:
    with av.open(io.BytesIO(data), format="ogg") as container:
        return sum(f.samples for f in container.decode(audio=0)) / 48_000


def test_ogg_crc_matches_the_spec_check_value() -> None:
    # CRC-32/MPEG-2 without final inversion as Ogg uses it: "123456789" → 0x89A1897F
    assert ogg_crc(b"123456789") == 0x89A1897F


def test_opus_samples_from_toc() -> None:
    tone = opus_tone(440, 3)
    assert [opus_samples(p) for p in tone] == [960, 960, 960]
    assert opus_samples(SILENCE) == 960
    assert opus_samples(bytes([0x00])) == 480  # SILK NB 10 ms
    assert opus_samples(bytes([0x03, 0x03])) == 3 * 480  # code 3, three 10 ms frames
    assert opus_samples(b"") == 0


def test_writer_remuxes_packets_unchanged() -> None:
    out = io.BytesIO()
    out.close = lambda: None  # type: ignore[method-assign]
    writer = OggOpusWriter(out, serial=7)
    sent = opus_tone(440, 120)
    for p in sent:
        writer.write(p)
    writer.close()
    data = out.getvalue()
    assert packets_of(data) == sent
    assert abs(decoded_seconds(data) - 120 * 0.02) < 0.05


def test_track_fills_gaps_with_silence(tmp_path: Path) -> None:
    track = Track(tmp_path / "es.ogg", 1, t0=100.0)
    tone = opus_tone(440, 20)
    for n, p in enumerate(tone[:10]):
        track.add(p, 100.0 + 0.02 * n)
    for n, p in enumerate(tone[10:]):  # two seconds later
        track.add(p, 102.2 + 0.02 * n)
    track.close(103.0)
    data = (tmp_path / "es.ogg").read_bytes()
    packets = packets_of(data)
    assert [p for p in packets if p != SILENCE] == tone
    assert abs(decoded_seconds(data) - 3.0) < 0.05, "the file runs on the wall clock"


@pytest.mark.usefixtures("loopback_ice")
async def test_chair_records_lists_and_downloads(start_node, invites, tmp_path) -> None:  # type: ignore[no-untyped-def]
    node = await start_node(settings={"recordings": str(tmp_path)})
    chair_token = invites.mint(room="plenary", role="moderator", name="Chair")
    ana_token = invites.mint(room="plenary", role="participant", name="Ana")
    chair = await Client.connect(node.url, chair_token)
    ana = await Client.connect(node.url, ana_token)
    refused = await ana.request("recording.start")
    assert refused["ok"] is False and refused["code"] == "forbidden"
    stopped = await chair.request("recording.stop")
    assert stopped["code"] == "not_recording"
    started = await chair.request("recording.start")
    assert started["ok"], started
    rec = await ana.wait_for(lambda s: s["audio"]["recording"], timeout(5))
    assert rec["by"] == chair.me, "everyone sees the room is recorded"
    assert rec["node"] == node.node.name
    rid = rec["id"]
    again = await chair.request("recording.start")
    assert again["code"] == "already_recording"
    refused = await ana.request("recording.stop")
    assert refused["ok"] is False and refused["code"] == "forbidden"
    mic = await publish(chair, "floor")
    sent = tagged(opus_tone(440, 50), tag=1)
    await mic.play(sent)
    await chair.command("channel.add", {"lang": "de"})  # a channel added mid-recording
    await ana.wait_for(lambda s: "de" in s["channels"]["channels"], timeout(5))  # folded
    recorder = node.node.feature["recording"].recorders["plenary"]
    assert "de" in recorder.tracks, "the recorder takes a channel added mid-recording"
    floor_track = recorder.tracks["floor"]
    await eventually(  # packets that came in a burst run ahead of the wall clock: let it catch up
        lambda: (time.monotonic() - recorder.t0) * 48_000 - floor_track.samples,
        until=lambda behind: behind >= 0,
        message="the recording's clock to reach the end of the speech it holds",
    )
    assert (await chair.request("recording.stop"))["ok"]
    await ana.wait_for(lambda s: s["audio"]["recording"] is None, timeout(5))
    await mic.close()

    async with httpx.AsyncClient(base_url=node.url) as http:
        auth = {"Authorization": f"Bearer {chair_token}"}
        listing = (await http.get("/api/recordings", headers=auth)).json()
        assert listing["room"] == "plenary" and listing["recording"] is None
        (entry,) = listing["recordings"]
        assert entry["id"] == rid
        assert [f["name"] for f in entry["files"]] == [
            "de.ogg",
            "es.ogg",
            "floor-lane1.ogg",  # one voice: only the first lane of the full floor carried one
            "floor.ogg",
            "fr.ogg",
            "ru.ogg",
        ]
        r = await http.get(f"/api/recordings/plenary/{rid}/floor.ogg", headers=auth)
        assert r.status_code == 200 and r.headers["content-type"] == "audio/ogg"
        floor = r.content
        assert [p for p in packets_of(floor) if p != SILENCE] == sent, "remuxed, not re-encoded"
        lane1 = await http.get(f"/api/recordings/plenary/{rid}/floor-lane1.ogg", headers=auth)
        assert [p for p in packets_of(lane1.content) if p != SILENCE] == sent
        es = (await http.get(f"/api/recordings/plenary/{rid}/es.ogg", headers=auth)).content
        assert set(packets_of(es)) <= {SILENCE}
        assert abs(decoded_seconds(es) - decoded_seconds(floor)) < 0.1, "files stay aligned"
        de = (await http.get(f"/api/recordings/plenary/{rid}/de.ogg", headers=auth)).content
        assert abs(decoded_seconds(de) - decoded_seconds(floor)) < 0.1, (
            "a channel added later starts with silence from the recording's start"
        )

        assert (await http.get("/api/recordings")).status_code == 401
        other = {"Authorization": f"Bearer {ana_token}"}
        assert (await http.get("/api/recordings", headers=other)).status_code == 403
        assert (
            await http.get(f"/api/recordings/plenary/{rid}/floor.ogg", headers=other)
        ).status_code == 403
        traversal = await http.get(
            f"/api/recordings/plenary/{rid}/..%2F..%2Fsecret.ogg", headers=auth
        )
        assert traversal.status_code == 404  # the router already refuses the path
        for bad, code in (
            (f"plenary/{rid}/nope.ogg", "no_such_recording"),
            ("plenary/..%2E/floor.ogg", "no_such_recording"),
            (f"plenary/{rid}/floor.txt", "no_such_recording"),
        ):
            r = await http.get(f"/api/recordings/{bad}", headers=auth)
            assert r.status_code == 404 and r.json()["code"] == code, (bad, r.text)
        # Another room's (or no room's) recordings: the chair's token is for the plenary.
        r = await http.get(f"/api/recordings/nowhere/{rid}/floor.ogg", headers=auth)
        assert r.status_code == 403 and r.json()["code"] == "wrong_room"
        r = await http.get("/api/recordings?room=nowhere", headers=auth)
        assert r.status_code == 403 and r.json()["code"] == "wrong_room"
    for c in (chair, ana):
        await c.close()


def serve_b(redis_url: str, port: int, recordings: Path) -> subprocess.Popen[bytes]:
    """Node B as its own process, so that it can be killed like a crashed machine."""
    from .conftest import SECRET

    return subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--backend", redis_url],
        env={
            **os.environ,
            "HEMICYCLE_SECRET": SECRET,
            "HEMICYCLE_NODE": "B",
            "HEMICYCLE_RECORDINGS": str(recordings),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def connect_when_up(url: str, token: str) -> Client:
    async with asyncio.timeout(timeout(20)):
        while True:
            try:
                return await Client.connect(url, token)
            except OSError:
                await asyncio.sleep(0.1)


@pytest.mark.redis
@pytest.mark.parametrize("restart", [False, True], ids=["others-stop-it", "b-restarts"])
async def test_a_crashed_recorders_recording_is_stopped(
    start_node,
    invites,
    redis_url,  # type: ignore[no-untyped-def]
    tmp_path,
    monkeypatch,
    restart,
) -> None:
    """Node B records, then is killed (SIGKILL): node A stops the recording in the state
    once B's heartbeat expires; or B, started again first, stops it itself without
    writing over the files of its previous life."""
    import server.media.recording as recording_module

    from .conftest import free_port

    # Restarting: A's orphan check never comes, so only B's second life can stop it.
    monkeypatch.setattr(recording_module, "ORPHAN_CHECK_EVERY", 1000 if restart else 0.4)
    a = await start_node(redis_url, name="A")
    port = free_port()
    procs = [serve_b(redis_url, port, tmp_path)]
    try:
        token = invites.mint(room="plenary", role="moderator", name="Chair")
        chair = await connect_when_up(f"http://127.0.0.1:{port}", token)
        started = await chair.request("recording.start")
        assert started["ok"], started
        hub = a.node.hubs["plenary"]
        async with asyncio.timeout(timeout(5)):
            while hub.state["audio"]["recording"] is None:
                await asyncio.sleep(0.02)
        rec = hub.state["audio"]["recording"]
        assert rec["node"] == "B"
        floor = tmp_path / "plenary" / rec["id"] / "floor.ogg"
        async with asyncio.timeout(timeout(5)):
            while not floor.exists():
                await asyncio.sleep(0.02)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        written = floor.stat().st_mtime_ns
        if restart:
            procs.append(serve_b(redis_url, free_port(), tmp_path))
        async with asyncio.timeout(timeout(15)):  # B's heartbeat lives 6 s
            while hub.state["audio"]["recording"] is not None:
                await asyncio.sleep(0.05)
        stops = [
            e
            for _, events in hub.recent
            for e in events
            if e["type"] == "recording.stopped" and e["id"] == rec["id"]
        ]
        assert [e["by"] for e in stops] == ["B" if restart else "A"]
        assert floor.stat().st_mtime_ns == written, "a file of the dead run is left as it was"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.mark.redis
@pytest.mark.usefixtures("loopback_ice")
async def test_the_node_of_the_chairs_connection_records_across_nodes(
    start_node,
    invites,
    redis_url,  # type: ignore[no-untyped-def]
    tmp_path,
) -> None:
    """A chair on B starts, only B writes; a chair on A stops, B finishes its files; a
    recording still running when its node shuts down is stopped by that node."""
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a = await start_node(redis_url, name="A", settings={"recordings": str(a_dir)})
    b = await start_node(redis_url, name="B", settings={"recordings": str(b_dir)})
    token = invites.mint(room="plenary", role="moderator", name="Chair")
    on_a = await Client.connect(a.url, token)
    on_b = await Client.connect(b.url, token)
    ivan = await Client.connect(
        a.url, invites.mint(room="plenary", role="interpreter", name="Ivan", booth="es")
    )
    assert (await ivan.request("recording.start"))["code"] == "forbidden"
    assert (await on_b.request("recording.start"))["ok"]
    rec = await on_a.wait_for(lambda s: s["audio"]["recording"], timeout(5))
    assert rec["node"] == "B"
    mic = await publish(on_a, "floor")  # heard on A, recorded on B through the bus
    sent = tagged(opus_tone(440, 50), tag=2)
    await mic.play(sent)
    recorder = b.node.feature["recording"].recorders["plenary"]
    await eventually(  # the frames cross the bus to B: wait for them, not for a guess
        lambda: recorder.tracks["floor"].packets,
        until=lambda n: n >= len(sent),
        timeout=10,
        message="node B to record every packet spoken on node A",
    )
    assert (await on_a.request("recording.stop"))["ok"]
    await on_b.wait_for(lambda s: s["audio"]["recording"] is None, timeout(5))
    recording = b.node.feature["recording"]
    async with asyncio.timeout(timeout(5)):
        while recording.recorders:
            await asyncio.sleep(0.02)
    assert not a_dir.exists(), "only the node named in the state records"
    floor = (b_dir / "plenary" / rec["id"] / "floor.ogg").read_bytes()
    assert [p for p in packets_of(floor) if p != SILENCE] == sent
    # The active speaker's tap (media/speaker.py) follows the floor's other users within
    # its WATCH interval: once the recording let go, nothing holds the floor on B.
    await eventually(
        lambda: b.node.feature["audio"].rooms["plenary"].sources,
        until=lambda sources: sources == {},
        timeout=5,
        message="taps are removed",
    )
    await mic.close()

    assert (await on_b.request("recording.start"))["ok"]
    rec = await on_a.wait_for(lambda s: s["audio"]["recording"], timeout(5))
    await on_b.close()
    await b.stop()
    await on_a.wait_for(lambda s: s["audio"]["recording"] is None, timeout(5))
    stops = [
        e
        for _, events in a.node.hubs["plenary"].recent
        for e in events
        if e["type"] == "recording.stopped" and e["id"] == rec["id"]
    ]
    assert [e["by"] for e in stops] == ["B"], "B stopped its own recording on the way out"
    data = (b_dir / "plenary" / rec["id"] / "floor.ogg").read_bytes()
    last = data.rindex(b"OggS")
    assert data[last + 5] & 0x04, "the file was finished (end-of-stream page)"
    for c in (on_a, ivan):
        await c.close()
