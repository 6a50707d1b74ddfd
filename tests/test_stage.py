"""The stage slice and sign-language channels: the pure reducers (rules, bad input, properties).

Driven by log entries through the fold, like the booths in test_channels.py (same ``Room``).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server import audio, channels, fold, stage
from server.types import RoomConfig

from .test_channels import Room


def assembly(**extra: Any) -> Room:
    """The seed's panel: a chair, four panelists, members, a sign booth (ils) of two."""
    room = Room(
        RoomConfig(
            id="r",
            title="R",
            floor="en",
            channels=("es", "fr"),
            extra={"sign": ("ils",), "grace_seconds": 2, **extra},
        )
    )
    room.join("chair", "moderator")
    for pid in ("kh", "do", "ps", "ug"):
        room.join(pid, "panelist")
    room.join("ana", "participant", lang="es")
    room.join("bob", "participant")
    room.join("sig1", "interpreter", booth="ils", pair=["en", "ils"])
    room.join("sig2", "interpreter", booth="ils", pair=["en", "ils"])
    room.join("es1", "interpreter", booth="es", pair=["en", "es"])
    return room


def st_(room: Room) -> dict[str, Any]:
    s: dict[str, Any] = room.state["stage"]
    return s


# --- who is on stage -------------------------------------------------------------------------


def test_on_stage_is_the_chair_the_panel_and_the_floor() -> None:
    room = assembly()
    assert stage.on_stage(room.state) == ["chair"], "the online chair is on stage from the start"
    room.do("chair", "stage.add", {"pid": "kh"})
    room.do("chair", "stage.add", {"pid": "ug"})
    room.do("ana", "hand.raise")
    room.do("chair", "floor.grant", {"pid": "ana"})
    assert stage.on_stage(room.state) == ["chair", "kh", "ug", "ana"]
    room.do("chair", "stage.add", {"pid": "ana"})
    assert stage.on_stage(room.state) == ["chair", "kh", "ug", "ana"], "no one twice"
    room.do("chair", "floor.revoke", {"pid": "ana"})
    assert "ana" in stage.on_stage(room.state), "put on stage: stays after the floor"
    room.do("chair", "stage.remove", {"pid": "ug"})
    assert stage.on_stage(room.state) == ["chair", "kh", "ana"]
    room.leave("chair")
    assert stage.on_stage(room.state) == ["kh", "ana"], "an offline chair is not seen"


def test_stage_commands_refuse_bad_input_and_change_nothing() -> None:
    room = assembly()
    assert room.refused("ana", "stage.add", {"pid": "kh"}) == "forbidden"
    assert room.refused("kh", "stage.layout", {"layout": "grid"}) == "forbidden"
    assert room.refused("chair", "stage.add", {"pid": "nobody"}) == "unknown_person"
    assert room.refused("chair", "stage.add", {"pid": "sig1"}) == "not_for_stage"
    assert room.refused("chair", "stage.add", {}) == "bad_args"
    assert room.refused("chair", "stage.add", {"pid": 7}) == "bad_args"
    assert room.refused("chair", "stage.remove", {"pid": "kh"}) == "not_on_stage"
    assert room.refused("chair", "stage.layout", {"layout": "mosaic"}) == "bad_args"
    assert room.refused("chair", "stage.pin", {"target": "bob"}) == "not_on_stage"
    assert room.refused("chair", "stage.pin", {"target": "screen"}) == "no_share"
    room.do("chair", "stage.add", {"pid": "kh"})
    assert room.refused("chair", "stage.add", {"pid": "kh"}) == "already_on_stage"
    for i in range(stage.MAX_PANEL - 1):
        room.join(f"p{i}", "panelist")
        room.do("chair", "stage.add", {"pid": f"p{i}"})
    assert room.refused("chair", "stage.add", {"pid": "do"}) == "stage_full"


def test_layout_and_pin_for_everyone() -> None:
    room = assembly(stage_layout="grid")
    assert st_(room)["layout"] == "grid", "the room's configured layout"
    assert room.do("chair", "stage.layout", {"layout": "grid"}) == [], "no change, no event"
    room.do("chair", "stage.layout", {"layout": "speaker"})
    room.do("chair", "stage.add", {"pid": "do"})
    (pinned,) = room.do("chair", "stage.pin", {"target": "do"})
    assert pinned == {"type": "stage.pinned", "target": "do", "by": "chair"}
    assert fold.view(room.state, {"pid": "bob", "role": "participant"})["stage"]["pin"] == "do"
    assert room.do("chair", "stage.pin", {"target": "do"}) == []
    events = room.do("chair", "stage.remove", {"pid": "do"})
    assert [e["type"] for e in events] == ["stage.removed", "stage.pinned"]
    assert events[1]["target"] is None and events[1]["by"] is None, "the room unpinned"
    assert st_(room)["pin"] is None
    room.do("chair", "stage.pin", {"target": "chair"})
    room.do("chair", "stage.pin", {"target": None})
    assert st_(room)["pin"] is None


# --- the screen share ------------------------------------------------------------------------


def test_one_share_at_a_time_stopped_by_its_publisher_or_the_chair() -> None:
    room = assembly()
    assert room.refused("kh", "share.start") == "not_on_stage"
    assert room.refused("sig1", "share.start") == "forbidden"
    room.do("chair", "stage.add", {"pid": "kh"})
    room.do("chair", "stage.add", {"pid": "do"})
    (started,) = room.do("kh", "share.start")
    assert started["pid"] == "kh" and st_(room)["share"] == {"pid": "kh", "since": room.ts}
    assert room.refused("do", "share.start") == "share_taken"
    assert room.refused("kh", "share.start") == "already_sharing"
    assert room.refused("chair", "share.start") == "share_taken"
    assert room.refused("do", "share.stop") == "not_your_share"
    room.do("chair", "stage.pin", {"target": "screen"})
    events = room.do("chair", "share.stop")
    assert [e["type"] for e in events] == ["share.stopped", "stage.pinned"]
    assert events[0] == {"type": "share.stopped", "pid": "kh", "by": "chair", "reason": "stopped"}
    assert st_(room)["share"] is None and st_(room)["pin"] is None
    assert room.refused("kh", "share.stop") == "no_share"
    room.do("do", "share.start")
    room.do("do", "share.stop")
    assert st_(room)["share"] is None
    room.do("chair", "share.start")
    assert sorted(stage.video_publishers(room.state)["chair"]) == ["camera", "screen"]


def test_a_share_stops_when_its_publisher_leaves_the_room_or_the_stage() -> None:
    room = assembly()
    room.do("ana", "hand.raise")
    room.do("chair", "floor.grant", {"pid": "ana"})
    room.do("ana", "share.start")
    events = room.do("chair", "floor.revoke", {"pid": "ana"})
    assert events[-1] == {
        "type": "share.stopped",
        "pid": "ana",
        "by": None,
        "reason": "off_stage",
    }
    room.do("chair", "stage.add", {"pid": "kh"})
    room.do("kh", "share.start")
    room.do("chair", "stage.pin", {"target": "screen"})
    room.join("kh", "panelist", conn="kh-2")  # a second tab
    kinds = [e["type"] for e in room.leave("kh")]
    assert "share.stopped" not in kinds, "still online in another tab: the share goes on"
    events = room.leave("kh", "kh-2")
    kinds = [e["type"] for e in events]
    assert kinds[-2:] == ["share.stopped", "stage.pinned"], kinds
    assert events[-2]["reason"] == "left"
    assert st_(room)["share"] is None and st_(room)["pin"] is None


# --- who may publish video -------------------------------------------------------------------


def test_video_publishers_follow_the_stage_and_the_sign_booth() -> None:
    room = assembly()
    assert stage.video_publishers(room.state) == {"chair": frozenset({"camera"})}
    room.do("chair", "stage.add", {"pid": "kh"})
    room.do("kh", "share.start")
    room.do("sig1", "air.take")
    assert stage.video_publishers(room.state) == {
        "chair": frozenset({"camera"}),
        "kh": frozenset({"camera", "screen"}),
        "sig1": frozenset({"sign:ils"}),
    }
    assert "ana" not in stage.video_publishers(room.state), "no floor, no camera"
    room.do("chair", "stage.remove", {"pid": "kh"})
    assert "kh" not in stage.video_publishers(room.state)


# --- sign-language channels: the booth machinery, without audio ------------------------------


def test_sign_channel_has_the_booth_rules() -> None:
    room = assembly()
    assert channels.signs(room.state) == ["ils"]
    assert channels.langs(room.state) == ["es", "fr"], "spoken channels only"
    room.do("sig1", "air.take")
    assert room.refused("sig2", "air.take") == "channel_occupied"
    room.do("sig2", "handover.request")
    room.do("sig1", "handover.accept")
    assert room.live("ils") == "sig2", "handover request/accept, one signer at a time"
    assert stage.video_publishers(room.state)["sig2"] == {"sign:ils"}
    assert "sig1" not in stage.video_publishers(room.state)
    room.leave("sig2")
    assert room.live("ils") == "sig2", "a disconnect starts the grace period"
    assert stage.video_publishers(room.state)["sig2"] == {"sign:ils"}
    room.tick(room.ts + 2_000)
    assert room.live("ils") is None
    assert stage.video_publishers(room.state) == {"chair": frozenset({"camera"})}


def test_sign_channel_is_seen_not_heard() -> None:
    room = assembly()
    room.join("deaf", "participant", lang="ils")
    assert channels.choice_of(room.state, "deaf") == channels.ORIGINAL, "no audio choice of ils"
    assert room.refused("ana", "channel.choose", {"lang": "ils"}) == "sign_channel"
    assert room.refused("es1", "booth.input", {"input": "ils"}) == "sign_channel"
    assert room.refused("chair", "channel.add", {"lang": "ils"}) == "channel_exists"
    room.do("sig1", "air.take")
    routes = audio.routes(room.state)
    assert "ils" not in routes.live and "ils" not in audio.sources(room.state)
    assert not routes.feeds("sig1", "ils")
    view = fold.view(room.state, {"pid": "bob", "role": "participant"})
    assert view["channels"]["sign"] == ["ils"]


# --- properties ------------------------------------------------------------------------------

PEOPLE = ("chair", "kh", "do", "ana", "bob")
ROLES = {"chair": "moderator", "kh": "panelist", "do": "panelist", "ana": "participant"}
COMMANDS = st.one_of(
    st.tuples(st.just("stage.add"), st.sampled_from(PEOPLE)),
    st.tuples(st.just("stage.remove"), st.sampled_from(PEOPLE)),
    st.tuples(st.just("stage.pin"), st.sampled_from((*PEOPLE, "screen", None))),
    st.tuples(st.just("stage.layout"), st.sampled_from(stage.LAYOUTS)),
    st.tuples(st.just("share.start"), st.sampled_from(PEOPLE)),
    st.tuples(st.just("share.stop"), st.sampled_from(PEOPLE)),
    st.tuples(st.just("floor.grant"), st.sampled_from(PEOPLE)),
    st.tuples(st.just("floor.revoke"), st.sampled_from(PEOPLE)),
    st.tuples(st.just("leave"), st.sampled_from(PEOPLE)),
    st.tuples(st.just("join"), st.sampled_from(PEOPLE)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(COMMANDS, max_size=40))
def test_the_share_and_the_pin_always_point_at_the_stage(steps: list[tuple[str, Any]]) -> None:
    room = Room()
    for pid in PEOPLE:
        room.join(pid, ROLES.get(pid, "participant"))
    for cmd, arg in steps:
        if cmd == "join":
            room.join(arg, ROLES.get(arg, "participant"), conn=f"{arg}-{room.n}")
        elif cmd == "leave":
            conns = room.state["core"]["people"][arg]["conns"]
            if conns:
                room.leave(arg, conns[0])
        elif cmd.startswith("stage.") or cmd == "floor.grant":
            key = {"stage.pin": "target", "stage.layout": "layout"}.get(cmd, "pid")
            room.entry("chair", "moderator", cmd, {key: arg})
        elif cmd == "floor.revoke":
            room.entry("chair", "moderator", cmd, {"pid": arg})
        else:
            room.entry(arg, ROLES.get(arg, "participant"), cmd, {})
        s = room.state["stage"]
        on = stage.on_stage(room.state)
        share = s["share"]
        if share is not None:
            assert ROLES.get(share["pid"]) == "moderator" or share["pid"] in on
            assert room.state["core"]["people"][share["pid"]]["conns"], "an offline share"
        pin = s["pin"]
        assert pin is None or (share is not None if pin == "screen" else pin in on)
        assert len(set(s["panel"])) == len(s["panel"])
    replay = Room()
    for entry, _ in room.log:
        fold.fold(replay.state, "x", dict(entry))  # type: ignore[arg-type]
    assert replay.state["stage"] == room.state["stage"], "the same log, the same stage"
