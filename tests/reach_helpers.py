"""Real coturn, real nftables, real speech for the reach tests (tests/test_reach*.py).

Everything stays in the test run's network namespace (only ``lo``): coturn listens on
127.0.0.1 on free ports; rules in an nftables table of that namespace drop UDP (all of it
but coturn's relay ports, which stand for "coturn can reach the node") or a share of one
flow's datagrams. Drops are on the **input** hook: a drop on output returns EPERM to the
sender, which copes with it, and is not what a network does (notes: testing-on-loopback).

coturn flags that exist only for tests: ``--allow-loopback-peers`` (everything here is on
127.0.0.1; coturn refuses loopback peers otherwise, 403 Forbidden IP), the narrow relay port
range, the temporary userdb/pidfile/log. Production flags: docs/deploy.md.

The fixtures here (``turn_cert``, ``turn_server``, ``rules``) are a plugin of the test run
(``pytest_plugins`` in tests/conftest.py): a test names them without importing them. The
page helpers at the end open the plenary's pages and bring them to the state most reach
tests start from (the chair or an interpreter heard by a participant).
"""

from __future__ import annotations

import array
import base64
import contextlib
import hashlib
import shutil
import socket
import subprocess
import tempfile
import time
import wave
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from server.node.config import Assembly

from . import test_audio_browser as ab
from .conftest import CHROMIUM_ARGS, free_port, timeout

RELAY_PORTS = (20000, 20199)
"""coturn's relay ports: below the kernel's ephemeral range (32768-60999), so no node or
browser socket lands there and the UDP block can let exactly the relay's traffic through."""
TURN_SECRET = "turn-test-secret-0123456789abcdef"


@dataclass
class Cert:
    cert: Path
    key: Path
    spki: str
    """base64(SHA-256(DER SubjectPublicKeyInfo)): Chromium's
    ``--ignore-certificate-errors-spki-list`` value, which accepts this certificate only."""


def make_cert(where: Path) -> Cert:
    """A self-signed certificate for 127.0.0.1 (SAN IP), made with openssl."""
    cert, key = where / "turn.pem", where / "turn.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=turn.hemicycle.test",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    pub = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-pubkey", "-noout"],
        check=True,
        capture_output=True,
    ).stdout
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "der"],
        input=pub,
        check=True,
        capture_output=True,
    ).stdout
    return Cert(cert, key, base64.b64encode(hashlib.sha256(der).digest()).decode())


@dataclass
class TurnServer:
    """coturn (``turnserver``) on 127.0.0.1: UDP/TCP on ``port``, TLS on ``tls_port``."""

    dir: Path
    cert: Cert
    port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> str:
        path = self.dir / "turn.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def urls(self, *transports: str) -> list[str]:
        """``udp``, ``tcp``, ``tls``: the URL of each for a browser."""
        out = {
            "udp": f"turn:127.0.0.1:{self.port}?transport=udp",
            "tcp": f"turn:127.0.0.1:{self.port}?transport=tcp",
            "tls": f"turns:127.0.0.1:{self.tls_port}?transport=tcp",
        }
        return [out[t] for t in transports]

    def start(self) -> None:
        binary = shutil.which("turnserver")
        if binary is None:
            pytest.fail("coturn is not installed: run scripts/test.sh, which installs it")
        low, high = RELAY_PORTS
        args = [
            binary,
            "-n",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            f"--listening-port={self.port}",
            f"--tls-listening-port={self.tls_port}",
            f"--min-port={low}",
            f"--max-port={high}",
            "--realm=hemicycle.test",
            "--use-auth-secret",
            f"--static-auth-secret={TURN_SECRET}",
            "--fingerprint",
            "--no-cli",
            "--no-dtls",
            "--no-multicast-peers",
            "--allow-loopback-peers",  # test-only: every address here is 127.0.0.1
            f"--cert={self.cert.cert}",
            f"--pkey={self.cert.key}",
            "--no-tlsv1",
            "--no-tlsv1_1",
            f"--userdb={self.dir / 'turndb'}",
            f"--pidfile={self.dir / 'turn.pid'}",
            f"--log-file={self.dir / 'turn.log'}",
            "--simple-log",
            "--no-stdout-log",
            "--verbose",  # the allocations' outcomes, which the tests read
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"turnserver exited with {self.proc.returncode}:\n{self.log[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.tls_port), 0.2),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return
            time.sleep(0.05)
        pytest.fail(f"turnserver did not listen on {self.port}/{self.tls_port}:\n{self.log}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture(scope="session")
def turn_cert() -> Iterator[Cert]:
    with tempfile.TemporaryDirectory(prefix="hc-turn-cert-") as tmp:
        yield make_cert(Path(tmp))


@pytest.fixture
def turn_server(turn_cert: Cert, tmp_path: Path) -> Iterator[TurnServer]:
    server = TurnServer(tmp_path, turn_cert)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def with_turn(
    assembly: Assembly, urls: list[str], secret: str = TURN_SECRET, **more: object
) -> Assembly:
    """``assembly`` with ``[media] turn = {urls, secret, **more}`` (``more``: a ``ttl``)."""
    turn = {"urls": urls, "secret": secret, **more}
    media = {**assembly.extra.get("media", {}), "turn": turn}
    return replace(assembly, extra={**assembly.extra, "media": media})


# --- nftables -------------------------------------------------------------------------------


def nft(script: str) -> None:
    if shutil.which("nft") is None:
        pytest.fail("nftables is not installed: run scripts/test.sh, which installs it")
    done = subprocess.run(["nft", "-f", "-"], input=script.encode(), capture_output=True)
    if done.returncode:
        pytest.fail(f"nft refused the rules: {done.stderr.decode()}\n{script}")


class Rules:
    """One nftables table in this namespace: rules added and removed as a test goes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.on = False

    def set(self, rules: str) -> None:
        """Replace the table's input chain with ``rules`` (one nft statement a line)."""
        self.clear()
        nft(
            f"table inet {self.name} {{\n chain input {{\n"
            "  type filter hook input priority 0; policy accept;\n"
            f"  {rules}\n }}\n}}\n"
        )
        self.on = True

    def clear(self) -> None:
        if self.on:
            nft(f"delete table inet {self.name}\n")
            self.on = False

    def counters(self) -> str:
        return subprocess.run(
            ["nft", "list", "table", "inet", self.name], capture_output=True, text=True
        ).stdout


BLOCK_UDP = (
    f"meta l4proto udp udp sport != {RELAY_PORTS[0]}-{RELAY_PORTS[1]} "
    f"udp dport != {RELAY_PORTS[0]}-{RELAY_PORTS[1]} counter drop"
)
"""Every UDP datagram but those to or from coturn's relay ports: the browser's UDP to the
node (and to coturn's UDP port) is gone, TCP (the page, TURN/TCP, TURN/TLS) goes through,
and coturn still reaches the node."""


@pytest.fixture
def rules() -> Iterator[Rules]:
    table = Rules("hcreach")
    try:
        yield table
    finally:
        table.clear()


def loss(port: int, percent: int) -> str:
    """Drop ``percent`` % of the UDP datagrams to ``port`` at random."""
    return f"udp dport {port} numgen random mod 100 < {percent} counter drop"


# --- speech --------------------------------------------------------------------------------


SPEECH = (
    "Madam President, distinguished delegates, the working group met four times since the "
    "last assembly. We reviewed the strategic framework, the budget for the coming two "
    "years, and the reports of the regional committees. Members from every region took "
    "part, and the proposals before you today reflect a broad consensus."
)


def speech_wav(path: Path) -> Path:
    """Speech by espeak-ng, resampled to 48 kHz mono 16-bit (Chromium's fake microphone).

    Speech, not a tone: Chromium codes a pure tone mostly in CELT mode, which carries no
    in-band FEC; speech is SILK/hybrid and carries LBRR in most packets (notes).
    """
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: run scripts/test.sh, which installs it")
    raw = path.with_suffix(".22k.wav")
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(raw), SPEECH], check=True)
    import av

    with av.open(str(raw)) as src, av.open(str(path), "w", format="wav") as dst:
        out = dst.add_stream("pcm_s16le", rate=48_000, layout="mono")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48_000)
        for frame in src.decode(audio=0):
            for f in resampler.resample(frame):
                for p in out.encode(f):
                    dst.mux(p)
        for f in resampler.resample(None):
            for p in out.encode(f):
                dst.mux(p)
        for p in out.encode(None):
            dst.mux(p)
    return path


def _nominated(pc: Any) -> Any:
    """The nominated candidate pair of a node-side aiortc peer connection, on its first
    transceiver's transport (its sender and its receiver share that one)."""
    transport = pc.getTransceivers()[0].receiver.transport.transport
    pair = transport._connection._nominated.get(1)
    if pair is None:
        raise AssertionError("the peer connection has no nominated pair yet")
    return pair


def node_port(pc: Any) -> int:
    """The local UDP port of a node-side aiortc peer connection's nominated pair."""
    return int(_nominated(pc).local_candidate.port)


def browser_port(pc: Any) -> int:
    """The browser's UDP port on a node-side aiortc peer connection's nominated pair."""
    return int(_nominated(pc).remote_candidate.port)


PHRASES = (
    "Madam President, the working group met four times.",
    "The budget is before you.",
    "We thank the regional committees.",
)
PAUSE = 2.0
"""Seconds of silence after each phrase of :func:`speech_with_pauses_wav`."""


def _espeak_48k(text: str, where: Path) -> array.array[int]:
    """``text`` spoken by espeak-ng, as 48 kHz mono 16-bit samples."""
    raw = where / "phrase.22k.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(raw), text], check=True)
    import av

    out: array.array[int] = array.array("h")
    with av.open(str(raw)) as src:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48_000)
        for frame in src.decode(audio=0):
            for f in resampler.resample(frame):
                out.frombytes(bytes(f.planes[0])[: f.samples * 2])
        for f in resampler.resample(None):
            out.frombytes(bytes(f.planes[0])[: f.samples * 2])
    return out


def speech_with_pauses_wav(path: Path) -> array.array[int]:
    """Short espeak-ng phrases, each followed by :data:`PAUSE` s of digital silence, written
    to ``path`` (48 kHz mono 16-bit, Chromium's fake microphone loops it); returns the
    samples, the reference a listener's audio is compared with."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: run scripts/test.sh, which installs it")
    samples: array.array[int] = array.array("h")
    for text in PHRASES:
        samples.extend(_espeak_48k(text, path.parent))
        samples.extend(array.array("h", bytes(int(PAUSE * 48_000) * 2)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48_000)
        w.writeframes(samples.tobytes())
    return samples


# --- pages ---------------------------------------------------------------------------------


def capture_args(*, audio: Path | None = None, video: Path | None = None) -> list[str]:
    """Chromium's flags, with its fake microphone and camera fed from these files."""
    args = list(CHROMIUM_ARGS)
    if video is not None:
        args.append(f"--use-file-for-fake-video-capture={video}")
    if audio is not None:
        args.append(f"--use-file-for-fake-audio-capture={audio}")
    return args


def tone_args(where: Path) -> list[str]:
    """Chromium's flags with a 440 Hz tone as its microphone (written in ``where``)."""
    return capture_args(audio=ab.tone_wav(where / "tone.wav", ab.TONE))


Opener = Callable[[Any, str, str], Awaitable[Any]]
"""How a test opens a page: ``(browser, url, token)`` to the page, once it is ready."""


async def open_as(
    browser: Any,
    node: Any,
    invites: Any,
    role: str,
    name: str,
    *,
    opener: Opener = ab.open_page,
    **claims: str,
) -> Any:
    """``name``'s page in the plenary as ``role`` (``claims``: more of the invite, a booth)."""
    return await opener(
        browser, node.url, invites.mint(room="plenary", role=role, name=name, **claims)
    )


async def chair_and_ana(
    browser: Any, node: Any, invites: Any, opener: Opener = ab.open_page
) -> tuple[Any, Any]:
    """The chair's page and a participant's (Ana), in that order."""
    chair = await open_as(browser, node, invites, "moderator", "Chair", opener=opener)
    ana = await open_as(browser, node, invites, "participant", "Ana", opener=opener)
    return chair, ana


async def mic_on(page: Any, seconds: float = 15) -> None:
    """The page's microphone on, once its publishing connection is up (within ``seconds``)."""
    await page.click("#mic-button")
    await page.wait_for_function(
        "() => HC.audio.mic && HC.audio.mic.pc.connectionState === 'connected'",
        timeout=timeout(seconds) * 1000,
    )


async def mic_off(page: Any) -> None:
    await page.click("#mic-button")
    await page.wait_for_function("() => !HC.audio.mic", timeout=timeout(5) * 1000)


async def listen(page: Any) -> None:
    """Click Listen; return once the page's listening connection is up."""
    await page.click("#listen-button")
    await page.wait_for_function(
        "() => HC.audio.pc && HC.audio.pc.connectionState === 'connected'",
        timeout=timeout(15) * 1000,
    )


async def spanish_heard(browser: Any, node: Any, invites: Any) -> tuple[Any, Any]:
    """An interpreter (Ivan) on air in the Spanish booth, heard by a participant (Ana) who
    picked Spanish. Returns (ivan, ana) pages."""
    ivan = await open_as(browser, node, invites, "interpreter", "Ivan", booth="es")
    ana = await open_as(browser, node, invites, "participant", "Ana")
    await ab.take_air(ivan, "es", 10)
    await ana.select_option("#channel-picker", "es")  # picking the language starts the audio
    await ab.wait_peak(ana, True, 10)
    return ivan, ana


async def still_on_spanish(ivan: Any, ana: Any) -> None:
    """Ana still hears Spanish, and Ivan is still on air."""
    # The page renders on the next animation frame (slower for a page in the background).
    await ana.wait_for_function(
        "() => document.getElementById('hearing').textContent.includes('Spanish')",
        timeout=timeout(5) * 1000,
    )
    assert await ana.evaluate("HC.state.channels.choice[HC.you.pid]") == "es"
    assert await ivan.evaluate("HC.state.channels.channels.es.live === HC.you.pid")
    assert await ivan.text_content("#mic-state") == "On air"
