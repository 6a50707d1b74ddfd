"""Settings (environment or a mapping tests hand in) and the assembly file (TOML).

Loading a bad assembly file fails at start with :class:`ConfigError` naming the file, the
key and what is wrong, e.g. ``config/assembly.toml: rooms[1].agenda[0].start: not an ISO
8601 UTC time``. Every table is strict: a key it does not know (a typo like ``wieght``)
stops the start too (``members[3]: unknown key 'wieght'``), and so does a prepared secret
vote whose roll has a weight held by one member only (docs/voting.md, "Weight classes").
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import polldefs
from ..errors import ConfigError
from ..types import AgendaItem, Member, RoomConfig

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "assembly.toml"
LANG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
ROOM_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")

TOP_KEYS = ("assembly", "members", "rooms", "media")
ASSEMBLY_KEYS = ("name", "floor", "languages")
MEMBER_KEYS = ("id", "name", "country", "weight", "representatives")
ROOM_KEYS = (
    "id",
    "title",
    "titles",
    "floor",
    "channels",
    "agenda",
    "fallback",
    "polls",
    "voting",
    "handover_seconds",
    "grace_seconds",
    "sign",
    "stage_layout",
)
AGENDA_KEYS = ("title", "start", "minutes", "titles")
MEDIA_KEYS = ("ice_servers", "server_ice_servers", "turn")
ICE_KEYS = ("urls", "username", "credential")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    backend: str = "memory://"
    config: str = str(DEFAULT_CONFIG)
    secret: str = ""
    public_url: str = ""
    """Base URL printed in invite links; defaults to http://host:port."""
    node: str = ""
    command_rate: float = 10.0
    """Frames per second one person may send, sustained: over all of that person's
    connections on one node, every frame type counted (commands, reactions, pings, offers,
    bad frames). Past it a frame gets ``rate_limited``."""
    command_burst: float = 30.0
    rate_strikes: float = 30.0
    """Frames refused with ``rate_limited`` a connection may still send (refilled at
    ``command_rate``) before it is closed with 4029."""
    conns_per_person: int = 3
    """Connections one person may hold at once, across nodes; a newer one closes the
    oldest with 4009."""
    reconnect_grace: float = 5.0
    """Seconds a closed connection stays online for its person to come back on the same
    node: a reconnect within it logs neither a leave nor a join."""
    conn_rate: float = 5.0
    """New WebSocket connections per second one address may open, sustained (the address
    uvicorn reports: behind a trusted proxy, the ``X-Forwarded-For`` it sets)."""
    conn_burst: float = 60.0
    media_loopback: bool | None = None
    """Whether offers may list loopback/link-local candidates; ``None`` (``auto``): only
    when ``host`` is a loopback address (the node itself runs on loopback)."""
    media_workers: int | None = None
    """Media worker processes (``HEMICYCLE_MEDIA_WORKERS``); ``None``: the assembly file's
    ``[media] workers`` (default one per core)."""
    recordings: str = "recordings"
    """Directory the chair's recordings are written to (``<room>/<id>/<source>.ogg``)."""
    turn_secret: str = ""
    """The secret shared with coturn (``[media] turn``); overrides the assembly file's."""
    rooms: tuple[str, ...] = ()
    """The rooms this node serves (folds, takes connections and requests for); empty: every
    room of the assembly. With many rooms, each node folding only its share keeps its memory
    and its reads of the log proportional to the rooms it serves (docs/scaling.md)."""
    on_demand: bool = False
    """Open a room (catch up with its log, subscribe, make its features' parts) on its
    first use here — a connection, a page, an invite — instead of every room at start,
    and close it after ``room_idle`` seconds unused (docs/scaling.md, "Many rooms")."""
    room_idle: float = 60.0
    """Seconds an ``on_demand`` room stays open with nothing using it."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "host": env.get("HEMICYCLE_HOST", cls.host),
            "port": _int(env.get("HEMICYCLE_PORT", str(cls.port)), "HEMICYCLE_PORT"),
            "backend": env.get("HEMICYCLE_BACKEND", cls.backend),
            "config": env.get("HEMICYCLE_CONFIG", cls.config),
            "secret": env.get("HEMICYCLE_SECRET", ""),
            "public_url": env.get("HEMICYCLE_PUBLIC_URL", ""),
            "node": env.get("HEMICYCLE_NODE", ""),
            "command_rate": _float(
                env.get("HEMICYCLE_COMMAND_RATE", "10"), "HEMICYCLE_COMMAND_RATE"
            ),
            "command_burst": _float(
                env.get("HEMICYCLE_COMMAND_BURST", "30"), "HEMICYCLE_COMMAND_BURST"
            ),
            "rate_strikes": _float(
                env.get("HEMICYCLE_RATE_STRIKES", "30"), "HEMICYCLE_RATE_STRIKES"
            ),
            "conns_per_person": _int(
                env.get("HEMICYCLE_CONNS_PER_PERSON", "3"), "HEMICYCLE_CONNS_PER_PERSON"
            ),
            "reconnect_grace": _float(
                env.get("HEMICYCLE_RECONNECT_GRACE", "5"), "HEMICYCLE_RECONNECT_GRACE"
            ),
            "conn_rate": _float(env.get("HEMICYCLE_CONN_RATE", "5"), "HEMICYCLE_CONN_RATE"),
            "conn_burst": _float(env.get("HEMICYCLE_CONN_BURST", "60"), "HEMICYCLE_CONN_BURST"),
            "media_loopback": _tristate(
                env.get("HEMICYCLE_MEDIA_LOOPBACK", "auto"), "HEMICYCLE_MEDIA_LOOPBACK"
            ),
            "media_workers": _optional_int(
                env.get("HEMICYCLE_MEDIA_WORKERS", ""), "HEMICYCLE_MEDIA_WORKERS"
            ),
            "recordings": env.get("HEMICYCLE_RECORDINGS", cls.recordings),
            "turn_secret": env.get("HEMICYCLE_TURN_SECRET", ""),
            "rooms": _names(env.get("HEMICYCLE_ROOMS", "")),
            "on_demand": _tristate(env.get("HEMICYCLE_ON_DEMAND", "no"), "HEMICYCLE_ON_DEMAND")
            is True,
            "room_idle": _float(env.get("HEMICYCLE_ROOM_IDLE", "60"), "HEMICYCLE_ROOM_IDLE"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse limits that make no sense, naming the variable."""
        for key, value in (
            ("HEMICYCLE_COMMAND_RATE", self.command_rate),
            ("HEMICYCLE_COMMAND_BURST", self.command_burst),
            ("HEMICYCLE_RATE_STRIKES", self.rate_strikes),
            ("HEMICYCLE_CONNS_PER_PERSON", self.conns_per_person),
            ("HEMICYCLE_CONN_RATE", self.conn_rate),
            ("HEMICYCLE_CONN_BURST", self.conn_burst),
        ):
            if not value > 0:
                raise ConfigError("environment", key, f"must be positive, got {value!r}")
        if self.media_workers is not None and not 0 <= self.media_workers <= 64:
            raise ConfigError("environment", "HEMICYCLE_MEDIA_WORKERS", "must be 0 to 64")
        if not self.room_idle >= 0:
            raise ConfigError("environment", "HEMICYCLE_ROOM_IDLE", "must be 0 or more seconds")
        if not 0 <= self.reconnect_grace <= 60:
            raise ConfigError("environment", "HEMICYCLE_RECONNECT_GRACE", "must be 0 to 60 seconds")

    def served(self, assembly: Assembly) -> list[str]:
        """The assembly's rooms this node serves, in the assembly's order; a name the
        assembly does not have stops the start (a typo must not silently serve nothing)."""
        unknown = sorted(set(self.rooms) - set(assembly.rooms))
        if unknown:
            raise ConfigError(
                "environment", "HEMICYCLE_ROOMS", f"no room {unknown[0]!r} in the assembly"
            )
        return [r for r in assembly.rooms if not self.rooms or r in self.rooms]

    @property
    def loopback_media(self) -> bool:
        """``media_loopback``, with ``auto`` decided by the bind address."""
        if self.media_loopback is not None:
            return self.media_loopback
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


def _optional_int(value: str, key: str) -> int | None:
    return None if value == "" else _int(value, key)


def _int(value: str, key: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError("environment", key, f"not an integer: {value!r}") from None


def _tristate(value: str, key: str) -> bool | None:
    word = value.strip().lower()
    if word == "auto":
        return None
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ConfigError("environment", key, f"expected auto, true or false: {value!r}")


def _names(value: str) -> tuple[str, ...]:
    """``"a, b,,c"`` → ``("a", "b", "c")``."""
    return tuple(n.strip() for n in value.split(",") if n.strip())


def _float(value: str, key: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError("environment", key, f"not a number: {value!r}") from None


@dataclass(frozen=True)
class Assembly:
    name: str
    floor: str
    languages: tuple[str, ...]
    rooms: dict[str, RoomConfig]
    members: tuple[Member, ...]
    source: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def member(self, member_id: str) -> Member | None:
        return next((m for m in self.members if m.id == member_id), None)


class _Reader:
    """Typed access to one TOML table that reports the file and the dotted key on error."""

    def __init__(self, source: str, data: Mapping[str, Any], where: str = "") -> None:
        self.source, self.data, self.where = source, data, where

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def only(self, known: Iterable[str]) -> None:
        """Refuse a key this table does not know, naming it (the first, alphabetically)."""
        unknown = sorted(set(self.data) - set(known))
        if unknown:
            raise ConfigError(self.source, self.where or "top level", f"unknown key {unknown[0]!r}")

    def fail(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.source, self.key(name), problem)

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if name not in self.data:
            if default is ...:
                raise self.fail(name, "missing")
            return default
        value = self.data[name]
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise self.fail(name, f"expected {names}, got {type(value).__name__}")
        return value

    def tables(self, name: str) -> list[_Reader]:
        items = self.get(name, list, [])
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ConfigError(self.source, f"{self.key(name)}[{i}]", "expected a table")
            out.append(_Reader(self.source, item, f"{self.key(name)}[{i}]"))
        return out

    def lang(self, name: str, default: Any = ...) -> str:
        value: str = self.get(name, str, default)
        if not LANG.match(value):
            raise self.fail(name, f"not a language code: {value!r}")
        return value

    def langs(self, name: str, default: Any = ...) -> tuple[str, ...]:
        values = self.get(name, list, default)
        for v in values:
            if not isinstance(v, str) or not LANG.match(v):
                raise self.fail(name, f"not a language code: {v!r}")
        if len(set(values)) != len(values):
            raise self.fail(name, "a language is listed twice")
        return tuple(values)


def load_assembly(path: str | Path) -> Assembly:
    source = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(source, "-", "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "-", f"not valid TOML: {exc}") from None
    return parse_assembly(data, source)


def parse_assembly(data: Mapping[str, Any], source: str = "<config>") -> Assembly:
    top = _Reader(source, data)
    top.only(TOP_KEYS)
    head = _Reader(source, top.get("assembly", dict), "assembly")
    head.only(ASSEMBLY_KEYS)
    _media(top)
    floor = head.lang("floor", "en")
    languages = head.langs("languages", [])
    if floor in languages:
        raise head.fail("languages", f"the floor language {floor!r} is not a channel")

    members = []
    seen: set[str] = set()
    member_tables = top.tables("members")
    for m in member_tables:
        m.only(MEMBER_KEYS)
        mid = m.get("id", str)
        if mid in seen:
            raise m.fail("id", f"member {mid!r} is listed twice")
        seen.add(mid)
        weight = m.get("weight", (int, float), 1)
        if weight <= 0:
            raise m.fail("weight", "must be positive")
        if abs(weight * 100 - round(weight * 100)) > 1e-6:  # the roll counts in hundredths
            raise m.fail("weight", f"at most two decimals (weights count in hundredths): {weight}")
        reps = m.get("representatives", list, [])
        if not all(isinstance(r, str) and r for r in reps):
            raise m.fail("representatives", "expected a list of names")
        country = m.get("country", str)
        if not re.fullmatch(r"[A-Z]{2}", country):
            raise m.fail("country", f"expected an ISO 3166 alpha-2 code, got {country!r}")
        members.append(
            Member(
                id=mid,
                name=m.get("name", str),
                country=country,
                weight=float(weight),
                representatives=tuple(reps),
            )
        )

    rooms: dict[str, RoomConfig] = {}
    room_tables = top.tables("rooms")
    if not room_tables:
        raise top.fail("rooms", "at least one room is needed")
    for r in room_tables:
        r.only(ROOM_KEYS)
        rid = r.get("id", str)
        if not ROOM_ID.match(rid):
            raise r.fail("id", f"room ids are lower-case letters, digits, - and _: {rid!r}")
        if rid in rooms:
            raise r.fail("id", f"room {rid!r} is defined twice")
        agenda = []
        for a in r.tables("agenda"):
            a.only(AGENDA_KEYS)
            start = a.get("start", str)
            if not _is_utc(start):
                raise a.fail(
                    "start", f"not an ISO 8601 UTC time (like 2026-12-03T12:00:00Z): {start!r}"
                )
            minutes = a.get("minutes", int)
            if minutes <= 0:
                raise a.fail("minutes", "must be positive")
            titles = a.get("titles", dict, {})
            agenda.append(
                AgendaItem(
                    title=a.get("title", str),
                    start=start,
                    minutes=minutes,
                    titles={str(k): str(v) for k, v in titles.items()},
                )
            )
        fallback = r.get("fallback", str, "original")
        if fallback not in ("original", "silence"):
            raise r.fail("fallback", "expected 'original' or 'silence'")
        for name in ("handover_seconds", "grace_seconds"):
            seconds = r.get(name, (int, float), None)
            if seconds is not None and seconds <= 0:
                raise r.fail(name, "must be a positive number of seconds")
        room_floor = r.lang("floor", floor)
        spoken = r.langs("channels", list(languages))
        sign = r.langs("sign", [])
        if set(sign) & {*spoken, room_floor}:
            raise r.fail("sign", "a sign-language channel cannot also be a spoken language")
        if r.get("stage_layout", str, "speaker") not in ("speaker", "grid", "screen"):
            raise r.fail("stage_layout", "expected 'speaker', 'grid' or 'screen'")
        _room_polls(r, rid, room_floor, members, member_tables)
        known = {"id", "title", "titles", "floor", "channels", "agenda", "fallback"}
        room_titles = r.get("titles", dict, {})
        if not all(isinstance(v, str) and v.strip() for v in room_titles.values()):
            raise r.fail("titles", "every title must be non-empty text, by language code")
        rooms[rid] = RoomConfig(
            id=rid,
            title=r.get("title", str, rid),
            floor=room_floor,
            channels=spoken,
            agenda=tuple(agenda),
            members=tuple(members),
            fallback=fallback,
            titles={str(k): str(v) for k, v in room_titles.items()},
            extra={k: v for k, v in r.data.items() if k not in known},
        )
    known_top = {"assembly", "members", "rooms"}
    return Assembly(
        name=head.get("name", str),
        floor=floor,
        languages=languages,
        rooms=rooms,
        members=tuple(members),
        source=source,
        extra={k: v for k, v in data.items() if k not in known_top},
    )


def _media(top: _Reader) -> None:
    """``[media]`` keys (server/media/setup.py reads the values and checks them)."""
    if "media" not in top.data:
        return
    media = _Reader(top.source, top.get("media", dict), "media")
    media.only(MEDIA_KEYS)
    for name in MEDIA_KEYS:
        if isinstance(media.data.get(name), list):
            for entry in media.tables(name):
                entry.only(ICE_KEYS)


def _room_polls(
    r: _Reader, rid: str, floor: str, members: list[Member], tables: list[_Reader]
) -> None:
    """A room's ``[rooms.voting]`` and ``[[rooms.polls]]``, checked now so the error names
    the file; and no prepared secret vote on a roll with a weight class of one member."""
    try:
        polldefs.voting_settings(rid, r.data)
        prepared = polldefs.from_config(rid, r.data, floor)
    except ConfigError as exc:
        key = exc.key.replace(f"rooms[{rid}]", r.where, 1)
        raise ConfigError(r.source, key, exc.problem) from None
    held = Counter(round(m.weight * 100) for m in members)
    for i, poll in enumerate(prepared):
        if not poll["secret"] or poll["electorate"] != "roll":
            continue
        for m, table in zip(members, tables, strict=True):
            if held[round(m.weight * 100)] == 1:
                raise ConfigError(
                    r.source,
                    f"{r.where}.polls[{i}].secret",
                    f"member {m.id!r} ({table.where}) is the only one with weight {m.weight:g}: "
                    "its receipt in the published list would show its choice. Give another "
                    "member that weight, or make the vote open (docs/voting.md)",
                )


def _is_utc(value: str) -> bool:
    if not value.endswith("Z"):
        return False
    try:
        datetime.fromisoformat(value[:-1] + "+00:00")
    except ValueError:
        return False
    return True
