"""Recording: Ogg/Opus files by remuxing, on the wall clock, listed and served to moderators."""

from __future__ import annotations

import io
import time
from pathlib import Path

import av
import httpx
import pytest

from server.client import Client
from server.media.recording import SILENCE, OggOpusWriter, Track, ogg_crc, opus_samples

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
    refused = await ana.rpc("rec.start")
    assert refused["ok"] is False and refused["code"] == "forbidden"
    stopped = await chair.rpc("rec.stop")
    assert stopped["code"] == "not_recording"
    started = await chair.rpc("rec.start")
    assert started["ok"], started
    rid = started["id"]
    rec = await ana.wait_for(lambda s: s["audio"]["recording"], timeout(5))
    assert rec["id"] == rid and rec["by"] == chair.me, "everyone sees the room is recorded"
    again = await chair.rpc("rec.start")
    assert again["code"] == "already_recording"
    mic = await publish(chair, "floor")
    sent = tagged(opus_tone(440, 50), tag=1)
    await mic.play(sent)
    await chair.command("channel.add", {"lang": "de"})  # a channel added mid-recording
    await ana.wait_for(lambda s: "de" in s["channels"]["channels"], timeout(5))  # folded
    recorder = node.node.media.rooms["plenary"].recorder
    assert "de" in recorder.tracks, "the recorder takes a channel added mid-recording"
    floor_track = recorder.tracks["floor"]
    await eventually(  # packets that came in a burst run ahead of the wall clock: let it catch up
        lambda: (time.monotonic() - recorder.t0) * 48_000 - floor_track.samples,
        until=lambda behind: behind >= 0,
        message="the recording's clock to reach the end of the speech it holds",
    )
    assert (await chair.rpc("rec.stop"))["ok"]
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
            "floor.ogg",
            "fr.ogg",
            "ru.ogg",
        ]
        r = await http.get(f"/api/recordings/plenary/{rid}/floor.ogg", headers=auth)
        assert r.status_code == 200 and r.headers["content-type"] == "audio/ogg"
        floor = r.content
        assert [p for p in packets_of(floor) if p != SILENCE] == sent, "remuxed, not re-encoded"
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
            (f"nowhere/{rid}/floor.ogg", "unknown_room"),
        ):
            r = await http.get(f"/api/recordings/{bad}", headers=auth)
            assert r.status_code == 404 and r.json()["code"] == code, (bad, r.text)
        r = await http.get("/api/recordings?room=nowhere", headers=auth)
        assert r.status_code == 404 and r.json()["code"] == "unknown_room"
    for c in (chair, ana):
        await c.close()


@pytest.mark.redis
async def test_a_crashed_recorders_recording_is_stopped(
    start_node,
    invites,
    redis_url,  # type: ignore[no-untyped-def]
    tmp_path,
    monkeypatch,
) -> None:
    """Node B records, then is killed (SIGKILL): node A stops the recording in the state."""
    import os
    import signal
    import subprocess
    import sys

    import server.media.room as media_module

    from .conftest import SECRET, free_port

    monkeypatch.setattr(media_module, "ORPHAN_CHECK_TICKS", 2)
    a = await start_node(redis_url, name="A")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--backend", redis_url],
        env={
            **os.environ,
            "HEMICYCLE_SECRET": SECRET,
            "HEMICYCLE_NODE": "B",
            "HEMICYCLE_RECORDINGS": str(tmp_path),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        token = invites.mint(room="plenary", role="moderator", name="Chair")
        url = f"http://127.0.0.1:{port}"
        chair = await eventually(
            lambda: connect_when_up(url, token),
            timeout=20,
            interval=0.1,
            message=f"node B to accept connections at {url}",
        )
        started = await chair.rpc("rec.start")
        assert started["ok"], started
        hub = a.node.hubs["plenary"]
        recording = await eventually(
            lambda: hub.state["audio"]["recording"], message="node A to see the recording"
        )
        assert recording["node"] == "B"
        assert (tmp_path / "plenary" / started["id"] / "floor.ogg").exists()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        await eventually(  # B's heartbeat lives 6 s
            lambda: hub.state["audio"]["recording"],
            until=lambda recording: recording is None,
            timeout=15,
            interval=0.05,
            message="node A to stop the crashed node B's recording in the state",
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def connect_when_up(url: str, token: str) -> Client | None:
    try:
        return await Client.connect(url, token)
    except OSError:  # not listening yet
        return None
