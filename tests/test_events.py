"""The typed events and state (server/events.py, server/state.py) against what the fold does.

- every event type the fold applies has a TypedDict in ``EVENT_TYPES``, and back;
- every applier declares the event type it is registered for;
- a scripted session through all slices produces every event type, each in its declared
  shape, and leaves the state, each person's view and each client's copy in theirs;
- ``Rules``: duplicate commands or events are refused at construction; a feature's own
  slice plugs in; forgetting old command ids is bounded and deterministic.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pytest

from server import events, fold, rooms, state
from server.types import (
    STAFF,
    AgendaItem,
    Command,
    Member,
    RoomConfig,
    Slice,
    arg_str,
    by_name,
)

from . import shapes
from .polls_helpers import Device, Room, key_for

SERVER = Path(__file__).resolve().parent.parent / "server"
PURE = ("rooms", "channels", "polls", "polls_core", "polls_secret", "audio")


# --- the registry ---------------------------------------------------------------------------


def test_every_applied_event_has_a_typeddict_and_every_typeddict_is_applied() -> None:
    assert set(fold.RULES.apply) == set(events.EVENT_TYPES)


def test_every_event_tag_in_the_pure_code_is_registered() -> None:
    """What the decide/react/tick functions write as a ``"type"`` is a known event."""
    found = set()
    for name in PURE:
        found |= set(re.findall(r'"type": "([a-z_.]+)"', (SERVER / f"{name}.py").read_text()))
    assert found, "the pattern no longer finds the events"
    assert found <= set(events.EVENT_TYPES), found - set(events.EVENT_TYPES)


def test_each_applier_declares_the_event_it_is_registered_for() -> None:
    for tag, fn in fold.RULES.apply.items():
        hint = get_type_hints(fn)["event"]
        declared = set(get_args(hint)) or {hint}
        assert events.EVENT_TYPES[tag] in declared, f"{fn.__qualname__} is applied to {tag}"


def test_event_types_are_described_for_the_wire() -> None:
    for tag, cls in events.EVENT_TYPES.items():
        assert events.tag_of(cls) == tag
        doc = (cls.__doc__ or "").strip()
        assert doc and "\n" not in doc, f"{cls.__name__} needs a one-line docstring"
        hints = get_type_hints(cls)
        assert "type" in hints and cls.__required_keys__ >= {"type"}


def test_optional_keys_are_known_at_runtime() -> None:
    """``NotRequired`` survives (it would not under ``from __future__ import annotations``
    on Python 3.11), so a tool reading the types sees which keys may be absent."""
    assert state.Person.__optional_keys__ == {"booth", "pair"}
    assert state.Meta.__optional_keys__ == {"outcomes"}
    assert "ballots" in state.Poll.__optional_keys__
    assert "voted" in state.Poll.__required_keys__


def test_the_shape_check_can_fail() -> None:
    good = {"type": "hand.raised", "pid": "ana", "ts": 1}
    shapes.check_event(good)
    for bad in (
        {**good, "pid": 3},
        {**good, "ts": True},
        {"type": "hand.raised", "pid": "ana"},
        {**good, "colour": "red"},
        {**good, "type": "hand.waved"},
        {"type": "air.released", "lang": "es", "pid": "x", "reason": "bored", "ts": 1, "by": None},
    ):
        with pytest.raises(shapes.ShapeError):
            shapes.check_event(bad)
    with pytest.raises(shapes.ShapeError, match="people"):
        s = fold.new_state(RoomConfig(id="r", title="R"))
        s["core"]["people"]["x"] = {"pid": "x"}  # type: ignore[typeddict-item]
        shapes.check_state(s)


# --- a session through every slice ------------------------------------------------------------

CONFIG = RoomConfig(
    id="hall",
    title="Hall",
    floor="en",
    channels=("es", "fr"),
    agenda=(AgendaItem("Opening", "2026-12-03T12:00:00Z", 10),),
    members=(
        Member("m0", "Member 0", "C0", 1.0, ("rep0",)),
        Member("m1", "Member 1", "C1", 1.0, ("rep1",)),  # a secret vote needs paired weights
    ),
    extra={"handover_seconds": 30, "grace_seconds": 15},
)
PEOPLE = {
    "chair": {"role": "moderator"},
    "ana": {"role": "participant", "lang": "es"},
    "rep0": {"role": "participant", "org": "m0"},
    "rep1": {"role": "participant", "org": "m1"},
    "es1": {"role": "interpreter", "booth": "es", "pair": ["en", "es"]},
    "es2": {"role": "interpreter", "booth": "es", "pair": ["en", "es"]},
    "cap": {"role": "captioner"},
}


class Session(Room):
    """A polls_helpers room (it checks every event and the state after every entry) that
    also keeps what each kind of client would hold."""

    def __init__(self) -> None:
        super().__init__(CONFIG)
        self.seen: list[dict[str, Any]] = []
        self.clients: dict[str, Any] = {}

    def entry(self, pid: str, role: str, cmd: str, args: dict[str, Any], **kw: Any) -> Any:
        out = super().entry(pid, role, cmd, args, **kw)
        assert out.error is None, (cmd, out.error)
        self.seen.extend(out.events)
        for who, client in self.clients.items():
            viewer = self.viewer(who)
            fold.apply_events(client, [e for e in out.events if fold.visible(e, viewer)])
        return out

    def viewer(self, pid: str) -> dict[str, Any]:
        return {"pid": pid, **PEOPLE[pid]}

    def arrive(self, pid: str, conn: str | None = None) -> None:
        args = {"pid": pid, "name": pid.title(), "conn": conn or f"conn-{pid}", **PEOPLE[pid]}
        self.system("join", args)

    def as_(self, pid: str, cmd: str, args: dict[str, Any] | None = None, **kw: Any) -> Any:
        return self.entry(pid, str(PEOPLE[pid]["role"]), cmd, args or {}, **kw)


def test_a_session_through_every_slice_produces_every_event_in_its_shape() -> None:
    s = Session()
    for pid in PEOPLE:
        s.arrive(pid)
    for pid in ("chair", "ana", "es1"):  # clients from here on: snapshot + events
        s.clients[pid] = fold.view(s.state, s.viewer(pid))

    # core
    s.as_("ana", "hand.raise")
    s.as_("ana", "hand.lower")
    s.as_("ana", "hand.raise")
    s.as_("chair", "floor.grant")
    s.as_("chair", "audio.mute", {"pid": "ana"})
    s.as_("ana", "floor.revoke")  # and the audio slice unmutes her
    s.as_("chair", "audio.mute", {"pid": "chair"})
    s.as_("chair", "audio.unmute", {"pid": "chair"})
    s.as_("chair", "agenda.next")
    s.as_("chair", "notice.post", {"text": "Coffee at four"})

    # channels and booths
    s.as_("ana", "channel.choose", {"lang": "fr"})
    s.as_("chair", "channel.add", {"lang": "de"})
    s.as_("es1", "air.take")
    s.as_("es1", "booth.cough", {"on": True})
    s.as_("es1", "booth.cough", {"on": False})
    s.as_("es1", "booth.signal", {"preset": "slow_down"})
    s.as_("es1", "booth.input", {"input": "fr"})
    s.as_("es1", "booth.output", {"lang": "en"})
    s.as_("es1", "chat.post", {"chat": "booth", "text": "water, please"})
    s.as_("chair", "chat.post", {"chat": "all", "text": "break at four"})
    s.as_("es1", "caption.post", {"lang": "es", "text": "Buenas tardes"})
    s.as_("cap", "caption.post", {"lang": "original", "text": "Good afternoon"})
    s.as_("es2", "handover.request")
    s.as_("es1", "handover.decline")
    s.as_("es2", "handover.request")
    s.as_("es2", "handover.cancel")
    s.as_("es1", "handover.offer")
    s.as_("es2", "handover.accept")
    s.as_("es1", "handover.request")
    s.system("tick", {}, ts=s.ts + 31_000)  # handover.expired
    s.system("leave", {"pid": "es2", "conn": "conn-es2"})  # booth.away
    s.arrive("es2")  # booth.back
    s.system("leave", {"pid": "es2", "conn": "conn-es2"})
    s.system("tick", {}, ts=s.ts + 16_000)  # air.released: disconnected
    s.as_("es1", "air.take")
    s.as_("es1", "air.release")

    # polls: an open poll, a draft deleted, proxies, a secret vote
    quick = {
        "question": "Lunch?",
        "kind": "single",
        "change": True,
        "options": [{"id": "a", "text": "Now"}, {"id": "b", "text": "Later"}],
    }
    s.chair("poll.create", {"def": quick})
    s.chair("poll.update", {"poll": "p1", "def": {**quick, "question": "Lunch now?"}})
    s.chair("poll.create", {"def": quick})
    s.chair("poll.delete", {"poll": "p2"})
    s.chair("poll.open", {"poll": "p1"})
    s.as_("ana", "ballot.cast", {"poll": "p1", "choice": "a"})
    s.as_("ana", "ballot.cast", {"poll": "p1", "choice": "b"}, ts=s.ts + 1_000)
    s.chair("poll.timer", {"poll": "p1", "seconds": 60})
    s.chair("poll.close", {"poll": "p1"})
    s.chair("poll.publish", {"poll": "p1"})
    s.as_("rep0", "proxy.grant", {"to": "m1"})
    s.as_("rep0", "proxy.revoke")
    secret = {"question": "Adopt?", "kind": "yesno", "electorate": "roll", "secret": True}
    s.chair("poll.create", {"def": secret})
    s.give_keys("p3")
    s.chair("poll.open", {"poll": "p3"})
    device = Device("hall", "p3", 100, key_for("hall", "p3", 100).public)
    s.as_("rep0", "ballot.claim", {"poll": "p3", "blinded": device.blinded()})
    device.take(s.sign("p3", "m0", 100))
    s.deposit("p3", device.sealed(["yes"]))
    s.chair("poll.close", {"poll": "p3"}, ts=s.ts + 1_000)
    s.reveal("p3")

    # audio: the recording
    s.entry("chair", "moderator", "recording.start", {}, conn="n1~chair")
    s.system("recording.stop", {})

    # the stage: a panelist, the layout, a pin, a share the chair stops (and the room unpins)
    s.as_("chair", "stage.add", {"pid": "ana"})
    s.as_("chair", "stage.layout", {"layout": "screen"})
    s.as_("ana", "share.start")
    s.as_("chair", "stage.pin", {"target": "screen"})
    s.as_("chair", "share.stop")
    s.as_("chair", "stage.remove", {"pid": "ana"})

    # invites: recorded, revoked; a representative added
    record = {"jti": "j1", "role": "participant", "name": "Ana", "org": "m0", "exp": 1}
    s.system("invite.record", {**record, "by": "chair"})
    s.chair("invite.revoke", {"jti": "j1"})
    s.chair("member.represent", {"member": "m0", "name": "Ana"})

    produced = {e["type"] for e in s.seen}
    assert produced == set(events.EVENT_TYPES), set(events.EVENT_TYPES) ^ produced
    for pid, client in s.clients.items():
        shapes.check_state(client)
        view = fold.view(s.state, s.viewer(pid))
        shapes.check_state(view)
        # Known gaps between a client's copy and a fresh view, left to the wire's shape
        # work: the chair's copy keeps the box and blinded claims (poll.created carries
        # ``ballots``), others miss ``sealed`` and ``seq`` (poll.sealed and poll.created go
        # to the chair only), an interpreter's copy gets every added channel's chat.
        for part in ("core", "audio"):
            assert client[part] == view[part], (pid, part)
        mine = {k: v for k, v in client["channels"].items() if k != "chats"}
        assert mine == {k: v for k, v in view["channels"].items() if k != "chats"}, pid
    shapes.check_state(fold.view(s.state, None))


# --- Rules -----------------------------------------------------------------------------------


def _decide_note(st: Any, actor: Any, args: dict[str, Any], ts: int) -> list[Any]:
    rooms.person(st, actor.pid)
    return [{"type": "note.added", "text": args["text"], "by": actor.pid}]


def _apply_note(st: Any, event: Any) -> None:
    st["notes"]["lines"].append(event["text"])


NOTES = Slice(
    name="notes",
    init=lambda config: {"lines": []},
    commands=by_name(
        Command("note.add", STAFF, lambda a: {"text": arg_str(a, "text", max_len=50)}, _decide_note)
    ),
    apply={"note.added": _apply_note},
)


def test_a_feature_plugs_its_own_slice_into_its_own_rules() -> None:
    rules = fold.Rules([*fold.DEFAULT_SLICES, NOTES])
    st = rules.new_state(CONFIG)
    assert st["notes"] == {"lines": []}  # type: ignore[typeddict-item]
    join = {"pid": "chair", "name": "C", "role": "moderator", "conn": "c1"}
    node = {"pid": "node", "role": "system", "conn": None}
    rules.fold(st, "1-0", {"cid": "a", "actor": node, "cmd": "join", "args": join, "ts": 1})
    chair = {"pid": "chair", "role": "moderator", "conn": "c1"}
    out = rules.fold(
        st, "2-0", {"cid": "b", "actor": chair, "cmd": "note.add", "args": {"text": "hi"}, "ts": 2}
    )
    assert out.events == [{"type": "note.added", "text": "hi", "by": "chair"}]
    assert st["notes"] == {"lines": ["hi"]}  # type: ignore[typeddict-item]
    assert rules.view(st, {"pid": "chair", "role": "moderator"})["notes"] == {"lines": ["hi"]}  # type: ignore[typeddict-item]
    assert "note.add" not in fold.RULES.commands, "the built-in rules know nothing of it"
    stranger = {"pid": "x", "role": "moderator", "conn": None}
    out = rules.fold(
        st,
        "3-0",
        {"cid": "c", "actor": stranger, "cmd": "note.add", "args": {"text": "?"}, "ts": 3},
    )
    assert out.error is not None and out.error["code"] == "unknown_person"


def test_duplicate_commands_events_or_slice_names_are_refused_at_construction() -> None:
    twin = Slice(name="twin", init=NOTES.init, commands=NOTES.commands, apply={})
    with pytest.raises(ValueError, match="command 'note.add' is given by both 'notes' and 'twin'"):
        fold.Rules([NOTES, twin])
    echo = Slice(name="echo", init=NOTES.init, commands={}, apply=NOTES.apply)
    with pytest.raises(ValueError, match="event 'note.added' is applied by both"):
        fold.Rules([NOTES, echo])
    with pytest.raises(ValueError, match="two slices are named 'notes'"):
        fold.Rules([NOTES, NOTES])
    tick = Slice(
        name="clock", init=NOTES.init, commands={"tick": NOTES.commands["note.add"]}, apply={}
    )
    with pytest.raises(ValueError, match="command 'tick'"):
        fold.Rules([tick])
    meta = Slice(name="meta", init=NOTES.init, commands={}, apply={})
    with pytest.raises(ValueError, match="cannot be named 'meta'"):
        fold.Rules([meta])


def test_a_command_table_refuses_a_name_given_twice() -> None:
    add = NOTES.commands["note.add"]
    assert by_name(add) == {"note.add": add}
    with pytest.raises(ValueError, match="command 'note.add' is given twice"):
        by_name(add, Command("note.add", STAFF, add.check, add.decide))


# --- forgetting command ids ------------------------------------------------------------------


def test_forgetting_is_bounded_in_order_and_deterministic(monkeypatch: Any) -> None:
    monkeypatch.setattr(fold, "MAX_OUTCOMES", 50)
    monkeypatch.setattr(fold, "FORGET_BATCH", 10)
    a = fold.new_state(CONFIG)
    b = None
    node = {"pid": "node", "role": "system", "conn": None}
    sizes = []
    for n in range(1, 200):
        entry = {"cid": f"c{n}", "actor": node, "cmd": "tick", "args": {}, "ts": n}
        fold.fold(a, f"{n}-0", copy.deepcopy(entry))
        if n == 73:
            b = fold.from_snapshot(a)  # a node that starts from a snapshot mid-batch
        elif b is not None:
            fold.fold(b, f"{n}-0", copy.deepcopy(entry))
        sizes.append(len(a["meta"]["outcomes"]))
    assert max(sizes) == 59 and min(sizes[60:]) == 50
    outcomes = a["meta"]["outcomes"]
    assert list(outcomes) == [f"c{n}" for n in range(199 - len(outcomes) + 1, 200)], "newest kept"
    assert b is not None and fold.digest(a) == fold.digest(b)
    # A forgotten id is folded again; a remembered one is a duplicate.
    forgotten = {"cid": "c1", "actor": node, "cmd": "tick", "args": {}, "ts": 999}
    assert not fold.fold(a, "200-0", forgotten).duplicate
    remembered = {"cid": "c199", "actor": node, "cmd": "tick", "args": {}, "ts": 999}
    assert fold.fold(a, "201-0", remembered).duplicate
