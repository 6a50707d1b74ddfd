"""The audio routing rules and the audio slice (pure: no sockets)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server import audio, fold
from server import channels as channels_slice
from server.audio import FLOOR, Routes
from server.errors import Refused
from server.types import Actor, RoomConfig

CONFIG = RoomConfig(id="r", title="R", floor="en", channels=("es", "fr", "ru"))
LANGS = ("es", "fr", "ru")
MOD = "moderator"


def state_with(
    people: dict[str, str],
    speakers: list[str] = (),  # type: ignore[assignment]
    channels: dict[str, Any] | None = None,
) -> dict[str, Any]:
    state = fold.new_state(CONFIG)
    for pid, role in people.items():
        state["core"]["people"][pid] = {"pid": pid, "role": role, "conns": ["c"]}
    state["core"]["speakers"] = list(speakers)
    if channels is not None:
        state["channels"].update(channels)
    return state


def channels_state(
    live: dict[str, str | None],
    cough: tuple[str, ...] = (),
    choice: dict[str, str] | None = None,
    interpreters: dict[str, tuple[str, str]] | None = None,
    fallback: str = "original",
) -> dict[str, Any]:
    """The fields of the channels slice (server/channels.py) that routing reads."""
    channels = {}
    for lang in LANGS:
        channel = channels_slice.new_channel(lang)
        channel.update(live=live.get(lang), cough=lang in cough and live.get(lang) is not None)
        channels[lang] = channel
    return {
        "fallback": fallback,
        "channels": channels,
        "choice": choice or {},
        "interpreters": {
            pid: {"pid": pid, "booth": b, "pair": [b], "input": i, "out": b}
            for pid, (b, i) in (interpreters or {}).items()
        },
    }


def test_floor_is_speakers_and_moderators_minus_muted() -> None:
    state = state_with(
        {"chair": "moderator", "bo": "participant", "ana": "participant"}, speakers=["bo"]
    )
    r = audio.routes(state)
    assert r.floor == {"chair", "bo"}
    assert r.feeds("bo", FLOOR) and not r.feeds("ana", FLOOR)
    state["audio"]["muted"] = ["bo"]
    assert audio.routes(state).floor == {"chair"}


def test_without_a_choice_everyone_hears_the_floor() -> None:
    r = audio.routes(state_with({"ana": "participant"}))
    assert r.hearing("ana", "participant") == (FLOOR, None)
    assert audio.sources(state_with({})) == [FLOOR, "es", "fr", "ru"]


def test_channel_carries_live_interpreter_then_fallback() -> None:
    ch = channels_state({"es": "ivan"}, choice={"ana": "es", "bo": "fr", "cy": "original"})
    r = audio.routes(state_with({}, channels=ch))
    assert r.hearing("ana", "participant") == ("es", FLOOR)
    assert r.hearing("bo", "participant") == (FLOOR, None), "nobody on fr: the original"
    assert r.hearing("cy", "participant") == (FLOOR, None)
    ch["fallback"] = "silence"
    assert audio.routes(state_with({}, channels=ch)).hearing("bo", "participant") == (None, None)


def test_cough_silences_without_falling_back() -> None:
    ch = channels_state({"es": "ivan"}, cough=("es",), choice={"ana": "es"})
    r = audio.routes(state_with({}, channels=ch))
    assert not r.feeds("ivan", "es")
    assert r.hearing("ana", "participant") == ("es", FLOOR), "a cough is silence, not the floor"


def test_interpreters_never_hear_their_own_channel() -> None:
    ch = channels_state(
        {"es": "ivan", "fr": "flo"},
        interpreters={"ivan": ("es", "floor"), "flo": ("fr", "es"), "rui": ("ru", "ru")},
    )
    r = audio.routes(state_with({}, channels=ch))
    assert r.hearing("ivan", "interpreter") == (FLOOR, None)
    assert r.hearing("flo", "interpreter") == ("es", None), "relay from es"
    assert r.hearing("rui", "interpreter") == (FLOOR, None), "own channel as input: the floor"


def test_an_interpreter_off_air_hears_the_live_partner_underneath() -> None:
    ch = channels_state({"es": "ivan"}, interpreters={"ivan": ("es", "floor"), "eva": ("es", "fr")})
    r = audio.routes(state_with({}, channels=ch))
    assert r.hearing("eva", "interpreter") == (FLOOR, "es"), "input as chosen, partner under"
    assert r.hearing("ivan", "interpreter") == (FLOOR, None), "the live one: never themself"
    nobody = audio.routes(
        state_with({}, channels=channels_state({}, interpreters={"eva": ("es", "floor")}))
    )
    assert nobody.hearing("eva", "interpreter") == (FLOOR, None), "nobody live: nothing under"


@given(
    live=st.dictionaries(st.sampled_from(LANGS), st.sampled_from(["i1", "i2", "i3"])),
    cough=st.lists(st.sampled_from(LANGS)),
    booths=st.dictionaries(
        st.sampled_from(["i1", "i2", "i3"]),
        st.tuples(st.sampled_from(LANGS), st.sampled_from(("floor", *LANGS))),
    ),
    choice=st.dictionaries(
        st.sampled_from(["p1", "p2", "i1"]), st.sampled_from(("original", *LANGS))
    ),
    fallback=st.sampled_from(["original", "silence"]),
)
def test_routing_properties(
    live: dict[str, str],
    cough: list[str],
    booths: dict[str, tuple[str, str]],
    choice: dict[str, str],
    fallback: str,
) -> None:
    ch = channels_state(live, tuple(cough), choice, booths, fallback)
    r = audio.routes(state_with({}, channels=ch))
    for pid, (booth, _) in booths.items():
        main, under = r.hearing(pid, "interpreter")
        assert main != booth
        assert under == (booth if live.get(booth) not in (None, pid) else None)
    for pid in ("p1", "p2"):
        main, under = r.hearing(pid, "participant")
        chosen = FLOOR if choice.get(pid, "original") == "original" else choice[pid]
        assert main in (chosen, FLOOR, None)
        assert under == (FLOOR if main not in (FLOOR, None) else None)
        if main is None:
            assert fallback == "silence" and chosen != FLOOR and chosen not in live
    for lang in LANGS:
        fed = {pid for pid in ("i1", "i2", "i3") if r.feeds(pid, lang)}
        assert len(fed) <= 1, "one voice per channel"
        assert fed == ({live[lang]} if lang in live and lang not in cough else set())


def test_may_publish() -> None:
    state = state_with(
        {"chair": "moderator", "bo": "participant", "iv": "interpreter"}, speakers=[]
    )
    state["channels"].update(channels_state({}, interpreters={"iv": ("es", "floor")}))
    assert audio.may_publish(state, {"pid": "chair", "role": "moderator"}, FLOOR) is True
    with pytest.raises(Refused, match="floor") as exc:
        audio.may_publish(state, {"pid": "bo", "role": "participant"}, FLOOR)
    assert exc.value.code == "not_granted"
    iv = {"pid": "iv", "role": "interpreter", "booth": "es"}
    assert audio.may_publish(state, iv, "es") is False, "stand-by until on air"
    for person, target, code in (
        (iv, "fr", "not_your_booth"),
        (iv, FLOOR, "forbidden"),
        (iv, "de", "no_such_channel"),
        ({"pid": "bo", "role": "participant"}, "es", "forbidden"),
        ({"pid": "xx", "role": "interpreter"}, "es", "not_in_booth"),
    ):
        with pytest.raises(Refused) as exc:
            audio.may_publish(state, person, target)
        assert exc.value.code == code
    state["channels"]["channels"]["es"]["live"] = "iv"
    assert audio.may_publish(state, iv, "es") is True


def entry(
    cmd: str, args: dict[str, Any], pid: str = "chair", role: str = "moderator", n: int = 0
) -> dict[str, Any]:
    return {
        "cid": f"{pid}:{cmd}:{n}",
        "actor": Actor(pid, role).to_wire(),
        "cmd": cmd,
        "args": args,
        "ts": 1000 + n,
    }


def test_mute_unmute_and_unmute_on_revoke() -> None:
    state = state_with({"chair": "moderator", "bo": "participant"}, speakers=["bo"])
    assert fold.fold(state, "1-0", entry("audio.mute", {"pid": "bo"})).error is None
    assert state["audio"]["muted"] == ["bo"]
    again = fold.fold(state, "2-0", entry("audio.mute", {"pid": "bo"}, n=1))
    assert again.error is not None and again.error["code"] == "already_muted"
    denied = fold.fold(state, "3-0", entry("audio.unmute", {"pid": "bo"}, "bo", "participant"))
    assert denied.error is not None and denied.error["code"] == "forbidden"
    unknown = fold.fold(state, "4-0", entry("audio.mute", {"pid": "zz"}, n=2))
    assert unknown.error is not None and unknown.error["code"] == "unknown_person"
    outcome = fold.fold(state, "5-0", entry("floor.revoke", {"pid": "bo"}, n=3))
    assert [e["type"] for e in outcome.events] == ["floor.revoked", "audio.unmuted"]
    assert state["audio"]["muted"] == []
    nm = fold.fold(state, "6-0", entry("audio.unmute", {"pid": "bo"}, n=4))
    assert nm.error is not None and nm.error["code"] == "not_muted"


def recording_entry(
    cmd: str, pid: str, role: str, n: int, conn: str | None = "n1~abc", args: Any = None
) -> dict[str, Any]:
    return {
        "cid": f"{pid}:{cmd}:{n}",
        "actor": Actor(pid, role, conn).to_wire(),
        "cmd": cmd,
        "args": {} if args is None else args,
        "ts": 1_764_435_004_123 + n,  # 2025-11-29T16:50:04.123Z
    }


@pytest.mark.parametrize("role", ["participant", "interpreter", "panelist", "captioner", "system"])
def test_only_a_moderator_starts_a_recording(role: str) -> None:
    """The fold itself checks the role: a log entry from any other role is refused."""
    state = state_with({"chair": "moderator", "ana": role})
    refused = fold.fold(state, "1-0", recording_entry("recording.start", "ana", role, 0))
    assert refused.error is not None and refused.error["code"] == "forbidden"
    assert state["audio"]["recording"] is None


@pytest.mark.parametrize("role", ["participant", "interpreter", "panelist", "captioner"])
def test_only_a_moderator_or_a_node_stops_a_recording(role: str) -> None:
    state = state_with({"chair": "moderator", "ana": role})
    assert (
        fold.fold(state, "1-0", recording_entry("recording.start", "chair", MOD, 0)).error is None
    )
    refused = fold.fold(state, "2-0", recording_entry("recording.stop", "ana", role, 1))
    assert refused.error is not None and refused.error["code"] == "forbidden"
    assert state["audio"]["recording"] is not None
    by_node = fold.fold(state, "3-0", recording_entry("recording.stop", "n2", "system", 2, None))
    assert by_node.error is None and state["audio"]["recording"] is None


def test_a_recording_is_written_by_the_node_of_the_moderators_connection() -> None:
    """Node and id come from the log entry (connection, log time), not from the client."""
    state = state_with({"chair": "moderator"})
    forged = {"id": "../x", "node": "elsewhere"}
    ok = fold.fold(state, "1-0", recording_entry("recording.start", "chair", MOD, 0, args=forged))
    assert ok.error is None
    assert ok.events == [
        {
            "type": "recording.started",
            "id": "20251129T165004Z-123",
            "node": "n1",
            "by": "chair",
            "since": 1_764_435_004_123,
        }
    ]
    assert state["audio"]["recording"] == {
        "id": "20251129T165004Z-123",
        "node": "n1",
        "by": "chair",
        "since": 1_764_435_004_123,
    }
    twice = fold.fold(state, "2-0", recording_entry("recording.start", "chair", MOD, 1))
    assert twice.error is not None and twice.error["code"] == "already_recording"
    stop = fold.fold(state, "3-0", recording_entry("recording.stop", "chair", MOD, 2))
    assert stop.events == [
        {
            "type": "recording.stopped",
            "id": "20251129T165004Z-123",
            "by": "chair",
            "ts": 1_764_435_004_125,
        }
    ]
    assert state["audio"]["recording"] is None
    again = fold.fold(state, "4-0", recording_entry("recording.stop", "chair", MOD, 3))
    assert again.error is not None and again.error["code"] == "not_recording"


@pytest.mark.parametrize("conn", [None, "no-node-here", "~abc"])
def test_a_recording_needs_a_connection_to_a_node(conn: str | None) -> None:
    state = state_with({"chair": "moderator"})
    out = fold.fold(state, "1-0", recording_entry("recording.start", "chair", MOD, 0, conn))
    assert out.error is not None and out.error["code"] == "no_node"
    assert state["audio"]["recording"] is None


def test_routes_defaults() -> None:
    r = Routes()
    assert r.carries(FLOOR) == FLOOR and r.carries("es") == FLOOR
