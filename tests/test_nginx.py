"""Debian's nginx, run with config/nginx.conf, in front of two nodes on one Redis.

The shipped file is used as is, except what must change on a test machine: ports, the
upstream nodes, the certificate (self-signed, made here), the static directory and where
logs and the pid go. Every such line must be found, so the test fails if the file drifts.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.client import Client
from server.node.auth import Invites
from server.web.headers import HEADERS

from .conftest import NodeFactory, RunningNode, free_port, timeout

pytestmark = pytest.mark.redis
ROOT = Path(__file__).resolve().parent.parent
NGINX = "/usr/sbin/nginx"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files), valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hemicycle test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def render(config: str, changes: dict[str, str]) -> str:
    """``config`` with each line of ``changes`` replaced; every one must be there."""
    for old, new in changes.items():
        assert config.count(old) == 1, f"config/nginx.conf no longer has {old!r} once"
        config = config.replace(old, new)
    return config


@dataclass
class Nginx:
    https: int
    http: int
    dir: Path
    cert: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https}"

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def access_log(self) -> str:
        return (self.dir / "access.log").read_text()


@pytest.fixture
async def nginx() -> AsyncIterator[Callable[[list[RunningNode]], Nginx]]:
    """``nginx([node, …])``: Debian's nginx with config/nginx.conf before those nodes."""
    if not os.path.exists(NGINX):
        pytest.fail("nginx is not installed: run scripts/test.sh, which installs it")
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="hc-nginx-") as tmp:
        home = Path(tmp)

        def start(nodes: list[RunningNode]) -> Nginx:
            cert, key = self_signed(home)
            https, http = free_port(), free_port()
            upstream = "".join(
                f"        server 127.0.0.1:{n.port} max_fails=2 fail_timeout=5s;\n" for n in nodes
            )
            temp = "".join(
                f"    {kind}_temp_path {home / kind};\n"
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            )
            shipped = (ROOT / "config" / "nginx.conf").read_text()
            text = render(
                shipped,
                {
                    "worker_processes auto;": "worker_processes 1;",
                    "pid /run/hemicycle-nginx.pid;": f"pid {home / 'nginx.pid'};",
                    "error_log /var/log/nginx/hemicycle-error.log warn;": (
                        f"error_log {home / 'error.log'} warn;"
                    ),
                    "access_log /var/log/nginx/hemicycle-access.log hemicycle;": (
                        f"access_log {home / 'access.log'} hemicycle;\n{temp}"
                    ),
                    "        server 127.0.0.1:8001 max_fails=2 fail_timeout=5s;\n"
                    "        server 127.0.0.1:8002 max_fails=2 fail_timeout=5s;\n": upstream,
                    "listen 80;": f"listen 127.0.0.1:{http};",
                    "listen [::]:80;": "",
                    "listen 443 ssl http2;": f"listen 127.0.0.1:{https} ssl http2;",
                    "listen [::]:443 ssl http2;": "",
                    "ssl_certificate /etc/hemicycle/tls/fullchain.pem;": f"ssl_certificate {cert};",
                    "ssl_certificate_key /etc/hemicycle/tls/privkey.pem;": (
                        f"ssl_certificate_key {key};"
                    ),
                    "alias /srv/hemicycle/static/;": f"alias {ROOT / 'static'}/;",
                },
            )
            if os.geteuid() == 0:  # as root nginx's workers would be "nobody": no temp dir
                text = "user root;\n" + text
            conf = home / "nginx.conf"
            conf.write_text(text)
            base = [NGINX, "-p", str(home), "-e", str(home / "error.log"), "-c", str(conf)]
            check = subprocess.run([*base, "-t"], capture_output=True, text=True)
            assert check.returncode == 0, f"nginx -t refused the config:\n{check.stderr}"
            procs.append(subprocess.Popen([*base, "-g", "daemon off;"]))
            deadline = time.monotonic() + timeout(10)
            while True:
                try:
                    socket.create_connection(("127.0.0.1", https), 0.2).close()
                    break
                except OSError:
                    if procs[-1].poll() is not None or time.monotonic() > deadline:
                        log = (home / "error.log").read_text()
                        pytest.fail(f"nginx did not start:\n{log}")
                    time.sleep(0.05)
            return Nginx(https, http, home, cert)

        try:
            yield start
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(10)


def node_holding(nodes: list[RunningNode], pid: str) -> RunningNode:
    """The node whose room holds ``pid``'s connection."""
    holding = [
        n for n in nodes if any(s.person["pid"] == pid for s in n.node.hubs["plenary"].sinks)
    ]
    assert len(holding) == 1, f"{pid} is connected to {len(holding)} nodes"
    return holding[0]


async def test_the_room_flow_through_nginx(
    start_node: NodeFactory, redis_url: str, invites: Invites, nginx: Any
) -> None:
    nodes = [await start_node(redis_url, name="A"), await start_node(redis_url, name="B")]
    front: Nginx = nginx(nodes)
    async with httpx.AsyncClient(verify=front.tls(), timeout=timeout(10)) as http:
        assert (await http.get(f"{front.url}/healthz")).status_code == 200
        # Static files come from disk, with the nodes' own security headers.
        js = await http.get(f"{front.url}/static/hc.js")
        assert js.status_code == 200 and js.content == (ROOT / "static" / "hc.js").read_bytes()
        assert js.headers["cache-control"] == "max-age=3600"  # nginx's `expires`, not a node's
        for name, value in HEADERS.items():
            assert js.headers[name] == value, name
        page = await http.get(f"{front.url}/r/plenary")
        assert page.status_code == 200 and page.headers["content-security-policy"]
        assert "strict-transport-security" in page.headers
        assert (await http.get(f"{front.url}/metrics")).status_code == 404
        plain = await http.get(f"http://127.0.0.1:{front.http}/r/plenary")
        assert plain.status_code == 301
        assert plain.headers["location"] == "https://127.0.0.1/r/plenary"

    # Delegates join through nginx; round robin puts them on both nodes.
    tokens = [
        invites.mint(room="plenary", role="participant", name=f"Delegate {i}") for i in range(4)
    ]
    delegates = [await Client.connect(front.url, t, ssl=front.tls()) for t in tokens]
    holders = {node_holding(nodes, d.me).port for d in delegates}
    assert holders == {n.port for n in nodes}, "nginx sent every delegate to one node"
    ana = delegates[0]
    other = next(n for n in nodes if n is not node_holding(nodes, ana.me))
    chair = await Client.connect(
        other.url, invites.mint(room="plenary", role="moderator", name="Chair")
    )
    await ana.command("hand.raise")
    await chair.wait_for(lambda s: s["core"]["hands"] == [ana.me], timeout(5))
    await chair.command("floor.grant", {"pid": ana.me})
    await ana.wait_for(lambda s: s["core"]["speakers"] == [ana.me], timeout(5))
    for client in (chair, *delegates):
        await client.close()
    log = front.access_log()
    assert "/ws" in log and "101" in log
    assert not any(t in log for t in tokens), "an invite token reached nginx's access log"


@pytest.mark.browser
async def test_the_page_loads_and_works_through_nginx(
    start_node: NodeFactory, redis_url: str, invites: Invites, nginx: Any, browser: Any
) -> None:
    from playwright.async_api import expect

    nodes = [await start_node(redis_url, name="A"), await start_node(redis_url, name="B")]
    front: Nginx = nginx(nodes)
    ms = int(timeout(10) * 1000)
    token = invites.mint(room="plenary", role="participant", name="Sokha Chan", country="KH")
    context = await browser.new_context(ignore_https_errors=True, locale="en-GB")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await page.goto(f"{front.url}/r/plenary#t={token}")
    await expect(page.locator("#status")).to_have_text("Connected", timeout=ms)
    pid = await page.evaluate("HC.you.pid")
    other = next(n for n in nodes if n is not node_holding(nodes, pid))
    chair = await Client.connect(
        other.url, invites.mint(room="plenary", role="moderator", name="Chair")
    )
    await page.get_by_role("button", name="Raise hand").click()
    await chair.wait_for(lambda s: s["core"]["hands"] == [pid], timeout(5))
    await chair.command("floor.grant", {"pid": pid})
    await expect(page.locator("#you-speak")).to_be_visible(timeout=ms)
    await chair.close()
    await context.close()
    assert not errors, errors
