"""Delivery by recipient: the hub's index of local connections by ``to`` selector.

A private event must reach exactly the connections ``fold.visible`` lets see it, found
through the index (``RoomHub.by_selector``) instead of a scan of every connection; what
everyone may see is still encoded once per codec.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from server import fold
from server.node.backends import open_backends
from server.node.hub import RoomHub
from server.node.metrics import Metrics
from server.protocol import Codec, Encoded, decode, encode, encode_map
from server.types import SYSTEM, Actor, RoomConfig

ROLES = ("participant", "panelist", "interpreter", "captioner", "moderator", "observer")
BOOTHS = (None, "es", "fr")


class Recorder:
    """A connection that keeps what it was sent (the hub's ``Sink``)."""

    def __init__(self, person: dict[str, Any], codec: Codec = "msgpack") -> None:
        self.person = person
        self.codec = codec
        self.frames: list[bytes | str] = []

    def deliver(
        self, frame: bytes | str, *, entry_id: str | None = None, ephemeral: bool = False
    ) -> None:
        self.frames.append(frame)

    def events(self) -> list[dict[str, Any]]:
        return [e for f in self.frames for e in decode(f, self.codec)["events"]]

    def revoked(self) -> None: ...

    def displace(self) -> None: ...

    async def drain(self, within: float) -> None: ...


def hub() -> RoomHub:
    return RoomHub(RoomConfig(id="r", title="R"), open_backends("memory://"), Metrics())


def people(rng: random.Random, n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        role = rng.choice(ROLES)
        booth = rng.choice(BOOTHS) if role in ("interpreter", "captioner") else None
        person = {"pid": f"p{i % (n // 2 + 1)}", "conn": f"c{i}", "role": role}
        if booth:
            person["booth"] = booth
        out.append(person)
    return out


def selector(rng: random.Random) -> str:
    return rng.choice(
        [
            f"pid:p{rng.randrange(20)}",
            f"role:{rng.choice(ROLES)}",
            f"booth:{rng.choice(['es', 'fr'])}",
            f"interpreters:{rng.choice(['es', 'fr'])}",
        ]
    )


def event(rng: random.Random, n: int) -> dict[str, Any]:
    e: dict[str, Any] = {"type": "notice", "n": n}
    kind = rng.random()
    if kind < 0.6:
        e["to"] = [selector(rng) for _ in range(rng.randrange(0, 3))]
    elif kind < 0.65:
        e["to"] = "pid:p1"  # not a list: nobody (the fold refuses these; the bus may not)
    return e


def attached(h: RoomHub, rng: random.Random, n: int) -> list[Recorder]:
    """``n`` random people's connections, in either codec, attached to ``h``."""
    sinks = [Recorder(p, rng.choice(["msgpack", "json"])) for p in people(rng, n)]
    for s in sinks:
        h.attach(s)
    return sinks


def test_each_connection_gets_exactly_the_events_it_may_see() -> None:
    rng = random.Random(13)
    counter = itertools.count()
    for _ in range(40):
        h = hub()
        sinks = attached(h, rng, 40)
        for s in rng.sample(sinks, 8):  # some leave again: the index forgets them
            h.detach(s)
            s.frames.clear()
        entries = [[event(rng, next(counter)) for _ in range(rng.randrange(1, 5))] for _ in "xyz"]
        for i, events in enumerate(entries):
            h._broadcast(f"{i + 1}-0", events)  # type: ignore[arg-type]
        for s in sinks:
            expected = [
                e
                for events in entries
                for e in events
                if s in h.sinks and fold.visible(e, s.person)
            ]
            assert s.events() == expected, s.person


def test_the_index_holds_the_connections_and_forgets_the_gone() -> None:
    h = hub()
    es1 = Recorder({"pid": "a", "conn": "c1", "role": "interpreter", "booth": "es"})
    cap = Recorder({"pid": "b", "conn": "c2", "role": "captioner", "booth": "es"})
    ana = Recorder({"pid": "c", "conn": "c3", "role": "participant"})
    for s in (es1, cap, ana):
        h.attach(s)
    assert h.by_selector["booth:es"] == {es1, cap}
    assert h.by_selector["interpreters:es"] == {es1}
    assert h.reached([{"to": ["interpreters:es", "pid:c"]}]) == {es1, ana}
    for s in (es1, cap, ana):
        h.detach(s)
    assert h.by_selector == {}


def test_a_private_event_looks_only_at_its_recipients() -> None:
    """A booth's chat among a thousand connections checks its booth, not the thousand."""
    h = hub()
    looked: list[str] = []

    class Watched(Recorder):
        @property
        def person(self) -> dict[str, Any]:  # type: ignore[override]
            looked.append(self._person["conn"])
            return self._person

        @person.setter
        def person(self, value: dict[str, Any]) -> None:
            self._person = value

    crowd = [Watched({"pid": f"p{i}", "conn": f"c{i}", "role": "participant"}) for i in range(1000)]
    booth = [
        Watched({"pid": f"i{i}", "conn": f"i{i}", "role": "interpreter", "booth": "es"})
        for i in range(2)
    ]
    for s in (*crowd, *booth):
        h.attach(s)
    looked.clear()
    h._broadcast("1-0", [{"type": "booth.chat", "to": ["interpreters:es"]}])  # type: ignore[list-item]
    assert all(len(s.frames) == 1 for s in booth) and not any(s.frames for s in crowd)
    assert len(looked) <= 2 * len(booth), f"looked at {len(looked)} connections for 2 recipients"


def test_public_events_are_encoded_once_per_codec() -> None:
    h = hub()
    sinks = [
        Recorder({"pid": f"p{i}", "conn": f"c{i}", "role": "participant"}, codec)
        for i, codec in enumerate(["json", "msgpack"] * 50)
    ]
    for s in sinks:
        h.attach(s)
    h._broadcast("1-0", [{"type": "notice"}, {"type": "x", "to": ["pid:p3"]}])  # type: ignore[list-item]
    distinct = {id(s.frames[0]) for s in sinks}
    assert len(distinct) == 3  # public-only in two codecs, and p3's own
    assert [e["type"] for e in sinks[3].events()] == ["notice", "x"]


def test_a_connection_welcomed_mid_batch_gets_only_what_came_after_its_welcome() -> None:
    """The hub does not flush on each welcome (a storm's writes would grow as joins ×
    connections): the batch's flush sends a connection attached during it only the
    entries its welcome did not hold, in order, private ones by the same rules."""
    rng = random.Random(21)
    counter = itertools.count()
    for _ in range(30):
        h = hub()
        old = attached(h, rng, 12)
        batch: list[tuple[str, list[Any]]] = []
        late: list[tuple[Recorder, int]] = []
        for i in range(rng.randrange(1, 7)):
            events = [event(rng, next(counter)) for _ in range(rng.randrange(1, 4))]
            batch.append((f"{i + 1}-0", events))
            h.unsent.append(batch[-1])  # folded, not yet flushed
            for p in people(rng, rng.randrange(0, 3)):  # welcomed here: holds batch[: i + 1]
                p["conn"] += f"-late{i}"
                sink = Recorder(p, rng.choice(["msgpack", "json"]))
                h.attach(sink)
                late.append((sink, i + 1))
        gone = rng.choice([s for s, _ in late]) if late and rng.random() < 0.3 else None
        if gone is not None:
            h.detach(gone)
        h.flush()
        assert h.unsent == [] and h.fresh == {}
        for s in old:
            want = [e for _, evs in batch for e in evs if fold.visible(e, s.person)]
            assert s.events() == want, s.person
            assert all(decode(f, s.codec)["id"] == batch[-1][0] for f in s.frames)
        for s, held in late:
            want = [e for _, evs in batch[held:] for e in evs if fold.visible(e, s.person)]
            assert s.events() == (want if s is not gone else []), (s.person, held)
            assert all(decode(f, s.codec)["id"] == batch[-1][0] for f in s.frames)


# --- shared welcomes ----------------------------------------------------------------------


def test_encode_map_splices_encoded_parts_and_decodes_as_encode() -> None:
    rng = random.Random(5)
    for codec in ("json", "msgpack"):
        for n in (0, 1, 15, 16, 40):
            items = [(f"k{i}", {"v": [i, "é" * rng.randrange(3), None, 1.5]}) for i in range(n)]
            spliced = [
                (k, Encoded(encode(v, codec), codec) if rng.random() < 0.5 else v)  # type: ignore[arg-type]
                for k, v in items
            ]
            frame = encode_map(spliced, codec)  # type: ignore[arg-type]
            assert frame == encode(dict(items), codec)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="json part spliced into a msgpack message"):
        encode_map([("a", Encoded("1", "json"))], "msgpack")


async def test_welcomes_share_the_parts_seen_alike_and_match_each_persons_view() -> None:
    from server.node.app import Node
    from server.node.config import DEFAULT_CONFIG, Settings, load_assembly
    from server.web.app import features

    assembly = load_assembly(DEFAULT_CONFIG)
    settings = Settings(secret="test-secret-0123456789abcdefghijklmnopqrstuv", node="t")
    node = Node(settings, assembly, open_backends("memory://"), features(settings, assembly))
    h = node.hubs["plenary"]
    system = Actor("node", SYSTEM).to_wire()
    persons = [
        {"pid": "chair", "conn": "c0", "name": "Chair", "role": "moderator"},
        {
            "pid": "es1",
            "conn": "c1",
            "name": "Elena",
            "role": "interpreter",
            "booth": "es",
            "pair": ["en", "es"],
        },  # fmt: skip
        {"pid": "ana", "conn": "c2", "name": "Sokha Chan", "role": "participant", "org": "aple-kh"},
        {"pid": "obs", "conn": "c3", "name": "Olga", "role": "observer"},
    ]

    def fold_in(n: int, cmd: str, args: dict[str, Any], actor: Any = system) -> None:
        entry = {"cid": f"e{n}", "actor": actor, "cmd": cmd, "args": args, "ts": 1000 + n}
        outcome = h.rules.fold(h.state, f"{n}-0", entry)  # type: ignore[arg-type]
        assert outcome.error is None, outcome.error

    for n, p in enumerate(persons, 1):
        fold_in(n, "join", p)
    fold_in(9, "channel.choose", {"lang": "es"}, Actor("ana", "participant", "c2").to_wire())
    heads = {}
    for codec in ("json", "msgpack"):
        for p in persons:
            head = {"type": "welcome", "room": "plenary", "you": p, "last": "9-0", "now": 5}
            frame = h.welcome_frame(head, p, codec)  # type: ignore[arg-type]
            expected = {**head, "state": h.view_for(p)}
            assert decode(frame, codec, limit=None) == decode(encode(expected, codec), codec)  # type: ignore[arg-type]
            heads[codec, p["pid"]] = frame
    core = h._alike["json", "core"]
    h.welcome_frame({"type": "welcome"}, persons[2], "json")
    assert h._alike["json", "core"] is core  # the roster was encoded once at this position
    roll = h._alike["json", "polls.roll"]  # and the member roll, inside the polls part
    h.welcome_frame({"type": "welcome"}, persons[0], "json")
    assert h._alike["json", "polls.roll"] is roll
    fold_in(10, "join", {"pid": "zed", "conn": "c9", "name": "Zed", "role": "participant"})
    fresh = decode(h.welcome_frame({"type": "welcome"}, persons[2], "json"), "json")
    assert "zed" in fresh["state"]["core"]["people"]  # a new position: encoded afresh
    assert h._alike["json", "core"] is not core
