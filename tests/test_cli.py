"""The hemicycle command: invite links, and the demo printing a link per role."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from typing import Any

from server.client import Client
from server.node.auth import Invites

from .conftest import SECRET, free_port


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def test_invite_prints_a_signed_link() -> None:
    out = run(
        "invite",
        "--room",
        "plenary",
        "--role",
        "participant",
        "--name",
        "Anna Huber",
        "--org",
        "ecpat-at",
        "--country",
        "AT",
        "--lang",
        "fr",
        HEMICYCLE_SECRET=SECRET,
        HEMICYCLE_PUBLIC_URL="https://assembly.example.org",
    )
    assert out.returncode == 0, out.stderr
    link = out.stdout.strip()
    assert link.startswith("https://assembly.example.org/r/plenary#t=")
    claims = Invites(SECRET).verify(link.split("#t=", 1)[1])
    assert claims["name"] == "Anna Huber" and claims["org"] == "ecpat-at"
    assert claims["lang"] == "fr" and claims["role"] == "participant"


def test_invite_refuses_without_secret_or_for_an_unknown_room() -> None:
    env = {k: v for k, v in os.environ.items() if k != "HEMICYCLE_SECRET"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.cli",
            "invite",
            "--room",
            "plenary",
            "--role",
            "participant",
            "--name",
            "X",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 2 and "HEMICYCLE_SECRET" in out.stderr
    out = run(
        "invite", "--room", "attic", "--role", "participant", "--name", "X", HEMICYCLE_SECRET=SECRET
    )
    assert out.returncode == 2 and "no room 'attic'" in out.stderr


def test_invite_for_a_member_names_one_of_its_representatives() -> None:
    base = ("invite", "--room", "plenary", "--role", "participant", "--org", "aple-kh")
    out = run(*base, "--name", "Mallory", HEMICYCLE_SECRET=SECRET)
    assert out.returncode == 2 and out.stdout == ""
    assert "'Mallory' is not a representative of 'aple-kh'" in out.stderr
    out = run(*base, "--name", "Dara Keo", HEMICYCLE_SECRET=SECRET)
    assert out.returncode == 0, out.stderr
    claims = Invites(SECRET).verify(out.stdout.strip().split("#t=", 1)[1])
    assert claims["jti"] and claims["name"] == "Dara Keo"
    # An observer never votes: their organisation is not checked.
    observer = ("invite", "--room", "plenary", "--role", "observer", "--org", "aple-kh")
    out = run(*observer, "--name", "Mallory", HEMICYCLE_SECRET=SECRET)
    assert out.returncode == 0, out.stderr


def test_the_demo_observer_link_is_an_observer(assembly: Any) -> None:
    from server.cli import demo_links
    from server.node.config import Settings

    links = dict(demo_links(Settings(secret=SECRET), assembly))
    [label] = [label for label in links if label.startswith("Observer")]
    claims = Invites(SECRET).verify(links[label].split("#t=", 1)[1])
    assert claims["role"] == "observer" and "org" not in claims


async def test_demo_serves_and_prints_a_link_per_role_but_never_the_secret() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "demo", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "HEMICYCLE_SECRET"},
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "Uvicorn running" in line:
                break
        text = "".join(lines)
        links = re.findall(rf"http://127\.0\.0\.1:{port}/r/\w+#t=\S+", text)
        assert "Chair (moderator)" in text and "Panelist" in text and "Member" in text
        assert len(links) >= 8
        assert "secret" not in text.lower()  # the generated secret stays in the process
        roles = set()
        for link in links[:3]:  # the links work: the server took them
            async with await Client.connect(
                f"http://127.0.0.1:{port}", link.split("#t=")[1]
            ) as client:
                roles.add(client.you["role"])
        assert roles == {"moderator", "panelist"}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert r.status == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
