"""The ``hemicycle`` command: ``serve``, ``demo`` and ``invite``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import secrets
import signal
import sys
from collections.abc import Sequence
from typing import Any

from . import invites
from .errors import BadArgs, ConfigError, Refused
from .node.auth import Invites
from .node.config import Assembly, Settings, load_assembly
from .types import CAPTIONER, INTERPRETER, MODERATOR, OBSERVER, PANELIST, PARTICIPANT, ROLES, Member

DEMO_INTERPRETERS = {
    "es": ("Elena Ruiz", "Pablo Gómez"),
    "fr": ("Claire Martin", "Julien Bernard"),
    "ru": ("Olga Ivanova", "Dmitri Petrov"),
}
"""Two interpreters per booth, as booths are staffed (they hand over every 20–30 minutes)."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hemicycle", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def server_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", help="bind address (HEMICYCLE_HOST, default 127.0.0.1)")
        p.add_argument("--port", type=int, help="port (HEMICYCLE_PORT, default 8000)")
        p.add_argument("--config", help="assembly file (HEMICYCLE_CONFIG)")
        p.add_argument(
            "--backend",
            help="memory://, redis://host:port/db or redis+cluster://h:p,… (HEMICYCLE_BACKEND)",
        )
        p.add_argument("--public-url", help="base URL for links (HEMICYCLE_PUBLIC_URL)")
        p.add_argument(
            "--rooms",
            help="rooms this node serves, comma-separated (HEMICYCLE_ROOMS, default all)",
        )
        p.add_argument(
            "--on-demand",
            action="store_true",
            default=None,
            help="open a room on its first use, close it when idle (HEMICYCLE_ON_DEMAND)",
        )

    serve = sub.add_parser("serve", help="run a server node")
    server_args(serve)
    demo = sub.add_parser("demo", help="run the demo assembly and print a link per role")
    server_args(demo)
    invite = sub.add_parser("invite", help="print an invite link")
    invite.add_argument("--room", required=True)
    invite.add_argument("--role", required=True, choices=ROLES)
    invite.add_argument("--name", required=True)
    for opt in ("org", "country", "lang", "booth"):
        invite.add_argument(f"--{opt}")
    invite.add_argument("--pair", help="interpreter's languages, comma-separated (en,es)")
    invite.add_argument("--hours", type=float, default=72.0, help="valid for (default 72)")
    invite.add_argument("--config")
    invite.add_argument("--public-url")

    args = parser.parse_args(argv)
    try:
        if args.command == "invite":
            return _invite(args)
        return _serve(args, demo=args.command == "demo")
    except ConfigError as exc:
        print(f"hemicycle: configuration error: {exc}", file=sys.stderr)
        return 2
    except (BadArgs, ValueError) as exc:
        print(f"hemicycle: {exc}", file=sys.stderr)
        return 2


def _rooms_arg(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(n.strip() for n in value.split(",") if n.strip())


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "config": args.config,
        "backend": getattr(args, "backend", None),
        "public_url": args.public_url,
        "rooms": _rooms_arg(getattr(args, "rooms", None)),
        "on_demand": getattr(args, "on_demand", None),
    }
    values.update(extra)
    return Settings.from_env(**values)


def _invite(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not settings.secret:
        print("hemicycle: set HEMICYCLE_SECRET to the server's secret", file=sys.stderr)
        return 2
    assembly = load_assembly(settings.config)
    if args.room not in assembly.rooms:
        print(f"hemicycle: no room {args.room!r} in {settings.config}", file=sys.stderr)
        return 2
    extra = {k: getattr(args, k) for k in ("org", "country", "lang", "booth") if getattr(args, k)}
    if args.org and args.role != OBSERVER:
        # The configured representatives only: one the chair added is minted over HTTP
        # (POST /api/invites), which also sees the room's log.
        reps = {m.id: list(m.representatives) for m in assembly.members}.get(args.org)
        try:
            invites.check_representative(reps, args.org, args.name)
        except Refused as exc:
            print(f"hemicycle: {exc.message}", file=sys.stderr)
            return 2
    if args.pair:
        extra["pair"] = args.pair.split(",")
    token = Invites(settings.secret).mint(
        room=args.room, role=args.role, name=args.name, hours=args.hours, **extra
    )
    print(f"{settings.base_url}/r/{args.room}#t={token}")
    return 0


def demo_links(settings: Settings, assembly: Assembly) -> list[tuple[str, str]]:
    """(label, link) for every role of the demo, plenary first."""
    invites = Invites(settings.secret)
    out: list[tuple[str, str]] = []

    def add(label: str, room: str, **claims: object) -> None:
        token = invites.mint(room=room, **claims)  # type: ignore[arg-type]
        out.append((label, f"{settings.base_url}/r/{room}#t={token}"))

    rooms = list(assembly.rooms)
    plenary = rooms[0]

    def add_member(kind: str, m: Member, role: str, note: str = "", **claims: object) -> None:
        """A link for the member organisation ``m``'s first representative (else its name)."""
        rep = m.representatives[0] if m.representatives else m.name
        label = f"{kind}: {rep}, {m.name} ({m.country}){note}"
        add(label, plenary, role=role, name=rep, org=m.id, country=m.country, **claims)

    add("Chair (moderator)", plenary, role=MODERATOR, name="Chair")
    for m in assembly.members[:4]:
        add_member("Panelist", m, PANELIST)
    for m, lang in zip(assembly.members[4:], ("es", "fr", "ru", "en", "es", "fr"), strict=False):
        add_member("Member", m, PARTICIPANT, f" [{lang}]", lang=lang)
    add("Observer (sees and hears all, never votes)", plenary, role=OBSERVER, name="Observer")
    floor = assembly.rooms[plenary].floor
    for lang in assembly.rooms[plenary].channels:
        for name in DEMO_INTERPRETERS.get(lang, (f"{lang} interpreter 1", f"{lang} interpreter 2")):
            add(
                f"Interpreter, {lang} booth: {name} ({floor}<>{lang})",
                plenary,
                role=INTERPRETER,
                name=name,
                booth=lang,
                pair=[floor, lang],
                lang=lang,
            )
    for lang in assembly.rooms[plenary].extra.get("sign", ()):
        for name in (f"{lang} signer 1", f"{lang} signer 2"):
            add(
                f"Sign interpreter, {lang} channel: {name} ({floor}>{lang})",
                plenary,
                role=INTERPRETER,
                name=name,
                booth=lang,
                pair=[floor, lang],
            )
    add("Captioner (floor and every channel)", plenary, role=CAPTIONER, name="Captioner")
    for room in rooms[1:]:
        add(f"Chair of '{assembly.rooms[room].title}'", room, role=MODERATOR, name="Panel chair")
        add(
            f"Participant in '{assembly.rooms[room].title}'",
            room,
            role=PARTICIPANT,
            name="Guest",
            lang="en",
        )
    return out


def _serve(args: argparse.Namespace, *, demo: bool) -> int:
    import uvicorn

    from .node.logconfig import log_config
    from .web.app import create_app
    from .web.halfopen import uvicorn_options

    extra: dict[str, Any] = {}
    if demo:
        extra["backend"] = getattr(args, "backend", None) or "memory://"
        if not Settings.from_env().secret:
            extra["secret"] = secrets.token_urlsafe(32)
    settings = _settings(args, **extra)
    assembly = load_assembly(settings.config)
    app = create_app(settings, assembly)
    if demo:
        backend = settings.backend.split("@")[-1]  # never a Redis password either
        print(f"\n  {assembly.name} — demo on {backend}\n")
        # Never the secret itself: whoever reads this terminal (or its scrollback, or a
        # shared screen) could mint any invite. The links below are all the demo needs.
        for label, link in demo_links(settings, assembly):
            print(f"  {label}\n    {link}\n")
        sys.stdout.flush()
    # No per-message deflate: it compresses every frame again for every connection (each has
    # its own context), which raised CPU per delivery by half in bench/fanout.py.
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        log_config=log_config("info"),  # invite tokens never reach the log (logconfig.py)
        ws_max_size=1024 * 1024,
        ws_ping_interval=20,
        ws_ping_timeout=20,
        ws_per_message_deflate=False,
        **uvicorn_options(),  # a request head not complete in 10 s is closed (halfopen.py)
    )
    _draining_server()(config, app.state.node).run()
    return 0


def _freeze_heap() -> None:
    """Once the node has started: collect, then move every object alive now (modules, the
    assembly and its roll, the rooms' replicas as replayed) out of the cyclic GC's reach.

    A full collection walks every tracked object; at start-up most of them live as long as
    the process. Frozen, they are never walked again, so a full collection that falls in a
    vote storm costs only what came after (docs/benchmarks.md, "Latency tails"). Objects
    frozen here are still freed by reference counting; only a cycle among them would stay.
    """
    gc.collect()
    gc.freeze()


def _draining_server() -> Any:
    import uvicorn

    class DrainingServer(uvicorn.Server):
        """uvicorn that drains the node on SIGTERM before it stops (a second signal, or
        SIGINT, stops at once): clients move to another node and resume (node/app.py)."""

        def __init__(self, config: uvicorn.Config, node: Any) -> None:
            super().__init__(config)
            self.node = node
            self._loop: asyncio.AbstractEventLoop | None = None
            self._drain: asyncio.Task[None] | None = None

        async def serve(self, sockets: Any = None) -> None:
            self._loop = asyncio.get_running_loop()
            await super().serve(sockets)

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            _freeze_heap()

        def handle_exit(self, sig: int, frame: Any) -> None:
            if sig == signal.SIGTERM and self._drain is None and self._loop is not None:
                self._loop.call_soon_threadsafe(self._start_drain)
                return
            super().handle_exit(sig, frame)

        def _start_drain(self) -> None:
            if self._drain is None:
                self._drain = asyncio.get_running_loop().create_task(self._drain_then_exit())

        async def _drain_then_exit(self) -> None:
            try:
                await self.node.drain()
            finally:
                self.should_exit = True

    return DrainingServer


if __name__ == "__main__":
    sys.exit(main())
