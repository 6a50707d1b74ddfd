"""Shared fixtures: real redis-server, real uvicorn nodes, invites, Chromium.

Everything listens on 127.0.0.1 and free ports. The full suite runs inside a network
namespace that has only ``lo`` (scripts/test.sh); browser tests refuse to start outside one.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from server.node.auth import Invites
from server.node.backends import Backends, open_backends
from server.node.config import DEFAULT_CONFIG, Assembly, Settings, load_assembly
from server.node.logconfig import log_config
from server.web.app import create_app

from .redis_cluster import RedisCluster, cluster_port

# The reach tests' fixtures (coturn, nftables rules): any test names them without importing.
pytest_plugins = ["tests.reach_helpers"]

SECRET = "test-secret-0123456789abcdefghijklmnopqrstuv"
SCALE = float(os.environ.get("HEMICYCLE_TEST_TIMEOUT_SCALE", "1"))
# Nodes that tests start (here, or as `hemicycle serve` processes, which inherit this) keep
# listeners in their own process, as before media workers, unless a test asks for workers
# (the `media_workers` fixture; tests/test_workers.py, test_media.py, test_media_channels.py).
os.environ.setdefault("HEMICYCLE_MEDIA_WORKERS", "0")


def timeout(seconds: float) -> float:
    """A test timeout, scaled for slow machines (HEMICYCLE_TEST_TIMEOUT_SCALE)."""
    return seconds * SCALE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RedisServer:
    port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = None
    appendfsync: str = "everysec"
    config: str | None = None
    """A redis.conf to run with (e.g. config/redis-production.conf); port and dir override it."""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: run scripts/test.sh, which installs it")
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--daemonize",
            "no",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        if self.config is None:
            args += ["--save", "", "--appendonly", "yes", "--appendfsync", self.appendfsync]
        else:
            args.insert(1, str(Path(self.config).resolve()))
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        pytest.fail(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), 2) as s:
            s.sendall(b"FLUSHALL\r\n")
            s.recv(16)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="hc-redis-") as tmp:
        server = RedisServer(free_port(), Path(tmp))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A clean database on the session's redis-server."""
    redis_server.flush()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A real Redis Cluster (three masters, three replicas) for the session."""
    with tempfile.TemporaryDirectory(prefix="hc-cluster-") as tmp:
        cluster = RedisCluster(Path(tmp), [cluster_port() for _ in range(6)])
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture
def cluster_url(redis_cluster: RedisCluster) -> str:
    """A clean Redis Cluster: ``redis+cluster://…`` with every node as a start node."""
    redis_cluster.wait_healthy()
    redis_cluster.flush()
    return redis_cluster.url


@pytest.fixture(scope="session")
def assembly() -> Assembly:
    return load_assembly(DEFAULT_CONFIG)


@pytest.fixture
def invites() -> Invites:
    return Invites(SECRET)


class TestServer(uvicorn.Server):
    """uvicorn without its signal handlers: a test process keeps its own SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class RunningNode:
    url: str
    port: int
    app: Any
    server: uvicorn.Server
    task: asyncio.Task[None]

    @property
    def node(self) -> Any:
        return self.app.state.node

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


NodeFactory = Callable[..., Awaitable[RunningNode]]


@pytest.fixture
def media_workers() -> int:
    """Media worker processes of the nodes a test starts: none (listeners in the node's
    process) unless a test module overrides this fixture (e.g. ``params=[0, 2]``)."""
    return 0


@pytest.fixture
async def start_node(assembly: Assembly, media_workers: int) -> AsyncIterator[NodeFactory]:
    """Start uvicorn nodes on free ports: ``await start_node(backend_url_or_Backends)``."""
    running: list[RunningNode] = []

    async def start(
        backend: str | Backends = "memory://",
        *,
        config: Assembly | None = None,
        name: str | None = None,
        settings: dict[str, Any] | None = None,
        **uvicorn_kw: Any,
    ) -> RunningNode:
        port = free_port()
        backends = backend if isinstance(backend, Backends) else None
        url = backend if isinstance(backend, str) else backend.url
        # Leaves are logged at once unless a test asks for a reconnect grace (the default
        # 5 s would make every test that watches someone go offline wait for it), and every
        # client comes from 127.0.0.1: the per-address connection burst is lifted unless a
        # test sets it (tests/test_limits.py does).
        node_settings = Settings(
            port=port,
            secret=SECRET,
            backend=url,
            node=name or f"n{port}",
            **{
                "reconnect_grace": 0.0,
                "conn_burst": 100_000.0,
                "media_workers": media_workers,
                **(settings or {}),
            },
        )
        app = create_app(node_settings, config or assembly, backends)
        server = TestServer(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=port,
                log_level="warning",
                log_config=log_config("warning", own=False),  # as `serve`: tokens redacted
                lifespan="on",
                ws_max_size=1024 * 1024,
                timeout_graceful_shutdown=3,
                **uvicorn_kw,
            )
        )
        task = asyncio.create_task(server.serve())
        deadline = time.monotonic() + timeout(10)
        while not server.started:
            if task.done():
                task.result()
                pytest.fail("server stopped during start")
            if time.monotonic() > deadline:
                pytest.fail("server did not start")
            await asyncio.sleep(0.01)
        workers = app.state.node.feature["audio"].workers
        if workers is not None:  # each imports aiortc: seconds on a busy machine
            deadline = time.monotonic() + timeout(60)
            while not all(link.ready.is_set() for link in workers.links):
                if time.monotonic() > deadline:
                    pytest.fail("the node's media workers did not start")
                await asyncio.sleep(0.05)
        node = RunningNode(f"http://127.0.0.1:{port}", port, app, server, task)
        running.append(node)
        return node

    yield start
    for node in running:
        if node.task.done():
            continue
        node.server.should_exit = True
        done, _ = await asyncio.wait({node.task}, timeout=timeout(30))
        if not done:  # say what hangs instead of waiting for pytest-timeout
            stacks = io.StringIO()
            for task in asyncio.all_tasks():
                task.print_stack(limit=8, file=stacks)
            node.task.cancel()
            pytest.fail(f"node {node.url} did not stop within 30 s; tasks:\n{stacks.getvalue()}")


@pytest.fixture
def shared_memory() -> Backends:
    """One memory backend that several in-process nodes can share."""
    return open_backends("memory://")


# --- Chromium -----------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--allow-loopback-in-peer-connection",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]


def only_loopback() -> bool:
    """True inside a network namespace that has nothing but ``lo``."""
    out = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    return all(line.split()[1] == "lo" for line in out.splitlines() if line.strip())


@pytest.fixture(scope="session")
def browser_args() -> list[str]:
    return list(CHROMIUM_ARGS)


@pytest.fixture
async def browser(browser_args: list[str]) -> AsyncIterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail("Chromium is not installed: run scripts/test.sh, which installs it")
    if not only_loopback():
        pytest.fail(
            "browser tests run only in a loopback-only network namespace: "
            "use scripts/test.sh (unshare --net)"
        )
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=browser_args)
        watched = WatchedBrowser(b)
        try:
            yield watched
        finally:
            await b.close()
        if watched.violations:
            pytest.fail("Content-Security-Policy violations:\n" + "\n".join(watched.violations))


CSP_MARK = "hc-csp-violation:"
CSP_WATCH = (
    "document.addEventListener('securitypolicyviolation', (e) => console.error("
    f"'{CSP_MARK} ' + e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline')"
    " + ' at ' + e.sourceFile + ':' + e.lineNumber));"
)


class WatchedBrowser:
    """A Playwright browser whose every page reports Content-Security-Policy violations:
    the ``securitypolicyviolation`` event (through an init script) and Chromium's own
    console message. The ``browser`` fixture fails the test if any were seen."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.violations: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.browser, name)

    def _console(self, message: Any) -> None:
        text = message.text
        if CSP_MARK in text or "Content Security Policy" in text:
            self.violations.append(text)

    async def new_context(self, **kwargs: Any) -> Any:
        context = await self.browser.new_context(**kwargs)
        await context.add_init_script(CSP_WATCH)
        context.on("console", self._console)
        return context

    async def new_page(self, **kwargs: Any) -> Any:
        page = await self.browser.new_page(**kwargs)
        await page.add_init_script(CSP_WATCH)
        page.on("console", self._console)
        return page

    def take_violations(self) -> list[str]:
        """What was seen so far (a test that provokes one on purpose takes it)."""
        seen, self.violations = self.violations, []
        return seen
