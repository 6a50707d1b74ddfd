"""Delivery by recipient: the hub's index of local connections by ``to`` selector.

A private event must reach exactly the connections ``fold.visible`` lets see it, found
through the index (``RoomHub.by_selector``) instead of a scan of every connection; what
everyone may see is still encoded once per codec.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

from server import fold
from server.node.backends import open_backends
from server.node.hub import RoomHub
from server.node.metrics import Metrics
from server.protocol import Codec, decode
from server.types import RoomConfig

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


def test_each_connection_gets_exactly_the_events_it_may_see() -> None:
    rng = random.Random(13)
    counter = itertools.count()
    for _ in range(40):
        h = hub()
        sinks = [Recorder(p, rng.choice(["msgpack", "json"])) for p in people(rng, 40)]
        for s in sinks:
            h.attach(s)
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
