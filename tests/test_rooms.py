"""The core slice and the fold, with no I/O."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server import fold
from server.errors import Forbidden, UnknownType
from server.types import SYSTEM, Actor, AgendaItem, RoomConfig

from . import shapes

CONFIG = RoomConfig(
    id="plenary",
    title="Plenary",
    agenda=(
        AgendaItem("Opening", "2026-12-03T12:00:00Z", 20),
        AgendaItem("Vote", "2026-12-03T12:20:00Z", 30),
    ),
)
NODE = {"pid": "node", "role": SYSTEM, "conn": None}


class Room:
    """A replica and a log, folded as a node would."""

    def __init__(self) -> None:
        self.state = fold.new_state(CONFIG)
        self.log: list[tuple[str, dict[str, Any]]] = []
        self.n = 0

    def do(
        self,
        actor: dict[str, Any],
        cmd: str,
        args: dict[str, Any] | None = None,
        cid: str | None = None,
        ts: int = 1000,
    ) -> fold.Outcome:
        self.n += 1
        entry = {
            "cid": cid or f"c{self.n}",
            "actor": actor,
            "cmd": cmd,
            "args": args or {},
            "ts": ts,
        }
        entry_id = f"{self.n}-0"
        self.log.append((entry_id, entry))
        outcome = fold.fold(self.state, entry_id, entry)
        for event in outcome.events:
            shapes.check_event(event)
        shapes.check_state(self.state)
        return outcome

    def join(self, pid: str, role: str = "participant", conn: str | None = None) -> dict[str, Any]:
        self.do(
            NODE,
            "join",
            {"pid": pid, "name": pid.title(), "role": role, "conn": conn or f"{pid}-c"},
        )
        return {"pid": pid, "role": role, "conn": conn or f"{pid}-c"}


def test_join_twice_is_one_person_with_two_connections() -> None:
    room = Room()
    room.join("ana", conn="tab1")
    room.join("ana", conn="tab2")
    people = room.state["core"]["people"]
    assert list(people) == ["ana"]
    assert people["ana"]["conns"] == ["tab1", "tab2"]
    room.do(NODE, "leave", {"pid": "ana", "conn": "tab1"})
    assert people["ana"]["conns"] == ["tab2"]
    # leaving twice is harmless and produces no event
    assert room.do(NODE, "leave", {"pid": "ana", "conn": "tab1"}).events == []


def test_person_joined_carries_the_record_the_state_holds() -> None:
    room = Room()
    first = room.do(
        NODE,
        "join",
        {"pid": "ana", "name": "Ana", "role": "participant", "lang": "es", "conn": "tab1"},
        ts=1000,
    )
    people = room.state["core"]["people"]
    assert first.events == [{"type": "person.joined", "person": people["ana"], "conn": "tab1"}]
    assert people["ana"] == {
        "pid": "ana",
        "name": "Ana",
        "role": "participant",
        "org": None,
        "country": None,
        "lang": "es",
        "conns": ["tab1"],
        "since": 1000,
    }
    # A second tab later, with another UI language: one record, both connections, first since.
    again = room.do(
        NODE,
        "join",
        {"pid": "ana", "name": "Ana", "role": "participant", "lang": "fr", "conn": "tab2"},
        ts=5000,
    )
    (event,) = again.events
    assert event["person"] == people["ana"] and event["conn"] == "tab2"
    assert people["ana"]["conns"] == ["tab1", "tab2"] and people["ana"]["since"] == 1000
    assert people["ana"]["lang"] == "fr"
    # The state does not share its record with the event (kept for resuming clients).
    room.do(NODE, "leave", {"pid": "ana", "conn": "tab1"})
    assert event["person"]["conns"] == ["tab1", "tab2"]
    # A client that applies the events to its own copy gets the node's state.
    copy_of = fold.new_state(CONFIG)
    fold.apply_events(copy_of, first.events + again.events)
    assert copy_of["core"]["people"]["ana"] == event["person"]


def test_hand_queue_and_floor() -> None:
    room = Room()
    chair = room.join("chair", "moderator")
    ana, bo = room.join("ana"), room.join("bo")
    assert room.do(ana, "hand.raise", ts=2000).error is None
    assert room.do(bo, "hand.raise", ts=3000).error is None
    assert room.do(ana, "hand.raise", ts=3500).error["code"] == "hand_already_raised"
    assert room.state["core"]["hands"] == ["ana", "bo"]
    assert room.state["core"]["raised"] == {"ana": 2000, "bo": 3000}
    out = room.do(chair, "floor.grant", {}, ts=5000)  # next speaker: first in the queue
    assert out.events[0] == {"type": "floor.granted", "pid": "ana", "by": "chair", "ts": 5000}
    assert room.state["core"]["hands"] == ["bo"]
    assert room.state["core"]["speakers"] == ["ana"]
    # Waiting and speaking times come from the log's timestamps: bo still waits, ana speaks
    assert room.state["core"]["raised"] == {"bo": 3000}
    assert room.state["core"]["floor_since"] == {"ana": 5000}
    assert room.do(ana, "hand.raise").error["code"] == "already_speaking"
    assert room.do(bo, "floor.revoke", {"pid": "ana"}).error["code"] == "forbidden"
    assert room.do(ana, "floor.revoke", {}).error is None  # a speaker may yield
    assert room.state["core"]["speakers"] == []
    assert room.state["core"]["floor_since"] == {}
    assert room.do(bo, "hand.lower", {"pid": "ana"}).error["code"] == "forbidden"
    assert room.do(chair, "hand.lower", {"pid": "bo"}).error is None
    assert room.state["core"]["raised"] == {}
    assert room.do(chair, "floor.grant", {}).error["code"] == "queue_empty"
    assert room.do(chair, "floor.grant", {"pid": "ghost"}).error["code"] == "unknown_person"


def test_agenda() -> None:
    room = Room()
    chair = room.join("chair", "moderator")
    assert room.state["core"]["current"] == -1
    room.do(chair, "agenda.next")
    room.do(chair, "agenda.next")
    assert room.state["core"]["current"] == 1
    assert room.do(chair, "agenda.next").error["code"] == "agenda_end"
    assert room.do(chair, "agenda.goto", {"index": 5}).error["code"] == "no_such_item"
    assert room.do(chair, "agenda.goto", {"index": "x"}).error["code"] == "bad_args"


def test_refused_command_changes_nothing_but_bookkeeping() -> None:
    room = Room()
    room.join("chair", "moderator")
    ana = room.join("ana")
    before = copy.deepcopy(room.state)
    out = room.do(ana, "agenda.next")
    assert out.error == {"code": "forbidden", "message": "a participant may not give 'agenda.next'"}
    assert out.events == []
    for key in ("core",):
        assert room.state[key] == before[key]


def test_a_repeated_cid_is_folded_once_and_repeats_the_first_outcome() -> None:
    room = Room()
    ana = room.join("ana")
    first = room.do(ana, "hand.raise", cid="ana:1")
    again = room.do(ana, "hand.raise", cid="ana:1")
    assert first.error is None and first.events
    assert again.duplicate and again.error is None and again.events == []
    refused = room.do(ana, "hand.raise", cid="ana:2")
    assert refused.error["code"] == "hand_already_raised"
    assert room.do(ana, "hand.raise", cid="ana:2").error["code"] == "hand_already_raised"


def test_check_refuses_before_the_log() -> None:
    with pytest.raises(UnknownType):
        fold.check(Actor("a", "participant"), "no.such", {})
    with pytest.raises(Forbidden):
        fold.check(Actor("a", "participant"), "join", {"pid": "x"})
    with pytest.raises(Forbidden):
        fold.check(Actor("a", "participant"), "notice.post", {"text": "hi"})


def test_view_hides_bookkeeping() -> None:
    room = Room()
    room.join("ana")
    view = fold.view(room.state, {"pid": "ana", "role": "participant"})
    assert "outcomes" not in view["meta"]
    assert view["core"] == room.state["core"]


# --- properties -------------------------------------------------------------------------

PIDS = ["chair", "ana", "bo", "cy"]
commands = st.lists(
    st.tuples(
        st.sampled_from(PIDS),
        st.sampled_from(
            [
                "hand.raise",
                "hand.lower",
                "floor.grant",
                "floor.revoke",
                "agenda.next",
                "join",
                "leave",
            ]
        ),
        st.sampled_from(PIDS + [None]),
        st.sampled_from(["c1", "c2"]),
    ),
    max_size=60,
)


def run(script: list[tuple[str, str, str | None, str]]) -> Room:
    room = Room()
    room.join("chair", "moderator")
    for who, cmd, target, conn in script:
        actor = {"pid": who, "role": "moderator" if who == "chair" else "participant", "conn": conn}
        if cmd == "join":
            room.do(NODE, "join", {"pid": who, "name": who, "role": actor["role"], "conn": conn})
        elif cmd == "leave":
            room.do(NODE, "leave", {"pid": who, "conn": conn})
        else:
            room.do(actor, cmd, {"pid": target} if target else {})
    return room


@settings(max_examples=200, deadline=None)
@given(commands)
def test_the_hand_queue_never_holds_a_person_twice(script: Any) -> None:
    core = run(script).state["core"]
    assert len(core["hands"]) == len(set(core["hands"]))
    assert len(core["speakers"]) == len(set(core["speakers"]))
    assert not set(core["hands"]) & set(core["speakers"])
    for p in core["people"].values():
        assert len(p["conns"]) == len(set(p["conns"]))


@settings(max_examples=200, deadline=None)
@given(commands)
def test_replaying_the_log_gives_the_live_state(script: Any) -> None:
    live = run(script)
    replica = fold.new_state(CONFIG)
    for entry_id, entry in live.log:
        fold.fold(replica, entry_id, copy.deepcopy(entry))
    assert fold.digest(replica) == fold.digest(live.state)


@settings(max_examples=100, deadline=None)
@given(commands)
def test_clients_applying_events_to_a_snapshot_match_the_server(script: Any) -> None:
    """What a client holds (snapshot + events) equals the server's view of the same point."""
    live = run(script[: len(script) // 2])
    client = fold.view(live.state, {"pid": "ana", "role": "participant"})
    rest = run(script)  # same prefix, then the rest
    for entry_id, entry in rest.log[len(live.log) :]:
        out = fold.fold(live.state, entry_id, copy.deepcopy(entry))
        fold.apply_events(client, out.events)
    assert client["core"] == live.state["core"]
