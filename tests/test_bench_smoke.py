"""bench/fanout.py --quick runs end to end: every peer delivers and the table prints.

A smoke test of the benchmark script, not of performance: no number is asserted beyond
"messages arrived". It starts its own redis-server and five small servers (~15 s).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import timeout

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.redis, pytest.mark.bench]


@pytest.mark.timeout(timeout(120))
def test_fanout_quick_run_delivers_for_every_peer_and_prints_the_table(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: run scripts/test.sh, which installs it")
    out = tmp_path / "steps.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fanout.py"), "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout(110),
    )
    assert run.returncode == 0, f"fanout.py --quick failed:\n{run.stdout}\n{run.stderr[-3000:]}"

    steps = json.loads(out.read_text())
    assert {s["peer"] for s in steps} == {"hemicycle", "socketio", "bare"}, steps
    for s in steps:
        assert s["clients"] == 20
        assert s["delivered"] > 0, f"{s['peer']} delivered nothing: {s['why']}"
        assert s["server_cpu_us"] >= 0
    table = run.stdout
    assert "| peer | clients | msg/s | delivered/s |" in table, table
    for peer in ("hemicycle", "socketio", "bare"):
        assert f"| {peer} | 20 |" in table, f"no row for {peer}:\n{table}"
    assert "Per peer and client count" in table


@pytest.mark.timeout(timeout(120))
def test_recipients_quick_run_prints_a_row_per_size() -> None:
    """bench/recipients.py in one process (no Redis, no sockets): the table and its rows."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "recipients.py"), "--sizes", "20,60", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout(110),
    )
    assert run.returncode == 0, f"recipients.py failed:\n{run.stdout}\n{run.stderr[-3000:]}"
    assert "| connections (= roster) | private event: index |" in run.stdout
    for size in ("| 20 |", "| 60 |"):
        assert size in run.stdout, run.stdout


@pytest.mark.timeout(timeout(120))
def test_joincost_run_shows_a_join_is_one_event_of_the_same_size_whatever_the_room() -> None:
    """bench/joincost.py in one process: a row per size; the join's frame does not grow."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "joincost.py"), "--sizes", "5,50", "--rounds", "5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout(110),
    )
    assert run.returncode == 0, f"joincost.py failed:\n{run.stdout}\n{run.stderr[-3000:]}"
    rows = [line.split(" | ") for line in run.stdout.splitlines() if line.startswith("| 5")]
    assert [r[0] for r in rows] == ["| 5", "| 50"], run.stdout
    for r in rows:
        assert r[1:3] == ["['person.joined']", "['person.left']"], r
    assert rows[0][3:5] == rows[1][3:5], "the join's frame grew with the room"


@pytest.mark.timeout(timeout(240))
def test_assembly_small_run_counts_every_line_and_ballot_once(tmp_path: Path) -> None:
    """bench/assembly.py at a tiny size, on its real Redis Cluster and two nodes: everyone is
    welcomed, every caption line reaches every participant once, every acknowledged ballot
    is in the published result once, and every page gets the result."""
    for binary in ("redis-server", "redis-cli"):
        if shutil.which(binary) is None:
            pytest.fail(f"{binary} is not installed: run scripts/test.sh, which installs it")
    out = tmp_path / "assembly.json"
    # fmt: off
    argv = [
        sys.executable, str(ROOT / "bench" / "assembly.py"), "--participants", "40", "--nodes",
        "2", "--voters", "12", "--workers", "2", "--idle", "1", "--caption-seconds", "2",
        "--quick-window", "1", "--json", str(out),
    ]
    # fmt: on
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout(230))
    assert run.returncode == 0, f"assembly.py failed:\n{run.stdout}\n{run.stderr[-3000:]}"
    r = json.loads(out.read_text())
    assert r["join"]["welcomed"] == 40 and r["join"]["chair_sees"] == 40, r["join"]
    c = r["captions"]
    assert c["accepted"] == c["sent"] == 12, c
    assert c["deliveries"] == 12 * 40 and c["lost"] == c["duplicated"] == 0, c
    for poll, voters in (("quick", 40), ("formal", 12)):
        b = r[poll]
        assert b["acked"] == b["ballots"] == voters, b
        assert b["lost"] == b["duplicated"] == 0 and b["pages"] == 40, b
    assert set(r["join"]["meter"]["cmds"]) >= {"xadd", "wait"}, "no appends counted on the masters"
    assert "| join storm | 40/40 welcomed" in run.stdout, run.stdout


@pytest.mark.timeout(timeout(240))
def test_panel_small_run_crosses_only_the_needed_layers_and_loses_nothing(tmp_path: Path) -> None:
    """bench/panel.py at a tiny size, on its own redis-server and two node processes: every
    tile of every viewer on both nodes got every packet of its layer, node B's through the
    bus, and exactly the speaker's h and the others' l crossed. Whether node A kept real time
    is performance, not asserted here (``--real-time 0``)."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: run scripts/test.sh, which installs it")
    out = tmp_path / "panel.json"
    # fmt: off
    argv = [
        sys.executable, str(ROOT / "bench" / "panel.py"), "--viewers", "6", "--seconds", "2",
        "--warmup", "3", "--real-time", "0", "--json", str(out),
    ]
    # fmt: on
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout(230))
    assert run.returncode == 0, f"panel.py failed:\n{run.stdout}\n{run.stderr[-3000:]}"
    r = json.loads(out.read_text())
    assert [row["viewers"] for row in r["rows"]] == [3, 3], r["rows"]
    for row in r["rows"]:
        for q in ("h", "l"):
            counts = row[q]
            assert counts["wanted"] > 0 and counts["lost"] == counts["unsent"] == 0, (row, q)
        assert row["bad"] == [], row["bad"]
    assert sorted(r["crossed_mbit"]) == ["chair:l", "do:l", "kh:h", "ps:l", "ug:l"], r
    assert r["rows"][1]["bus_in"] > 0, "node B took nothing from the bus"
    assert "PASS: 6 viewers across two nodes without loss" in run.stdout, run.stdout
