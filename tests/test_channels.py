"""Channels and booths: the pure reducers (rules, bad input, hypothesis properties).

The wire and two-node tests are in test_channels_nodes.py, the browser test in
test_channels_browser.py.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server import audio, channels, fold, rooms
from server.types import RoomConfig

from . import shapes

ES1, ES2, ES3, FR1, RU1 = "es1", "es2", "es3", "fr1", "ru1"


class Room:
    """One room's state driven by log entries, as a node folds them."""

    def __init__(self, config: RoomConfig | None = None) -> None:
        self.config = config or RoomConfig(
            id="r", title="R", floor="en", channels=("es", "fr", "ru")
        )
        self.state = fold.new_state(self.config)
        self.n = 0
        self.ts = 1_000_000
        self.roles: dict[str, str] = {}
        self.log: list[tuple[dict[str, Any], fold.Outcome]] = []

    def entry(
        self,
        pid: str,
        role: str,
        cmd: str,
        args: dict[str, Any] | None = None,
        *,
        at: int | None = None,
    ) -> fold.Outcome:
        self.n += 1
        self.ts = at if at is not None else self.ts + 10
        entry = {
            "cid": f"c{self.n}",
            "actor": {"pid": pid, "role": role, "conn": None},
            "cmd": cmd,
            "args": args or {},
            "ts": self.ts,
        }
        outcome = fold.fold(self.state, f"{self.n}-0", entry)
        for event in outcome.events:  # "to" is the one routing key: a list, never a field
            assert isinstance(event.get("to", []), list), event
            shapes.check_event(event)
        shapes.check_state(self.state)
        self.log.append((entry, outcome))
        return outcome

    def do(
        self, pid: str, cmd: str, args: dict[str, Any] | None = None, **kw: Any
    ) -> list[dict[str, Any]]:
        outcome = self.entry(pid, self.roles[pid], cmd, args, **kw)
        assert outcome.error is None, outcome.error
        return outcome.events

    def refused(self, pid: str, cmd: str, args: dict[str, Any] | None = None, **kw: Any) -> str:
        before = copy.deepcopy({k: v for k, v in self.state.items() if k != "meta"})
        outcome = self.entry(pid, self.roles[pid], cmd, args, **kw)
        assert outcome.error is not None, f"{cmd} was accepted: {outcome.events}"
        after = {k: v for k, v in self.state.items() if k != "meta"}
        assert after == before, "a refused command changed the state"
        return outcome.error["code"]

    def join(
        self, pid: str, role: str = "participant", conn: str | None = None, **claims: Any
    ) -> list[dict[str, Any]]:
        self.roles[pid] = role
        args = {"pid": pid, "name": pid.upper(), "role": role, "conn": conn or pid + "-c", **claims}
        outcome = self.entry("node", "system", "join", args)
        assert outcome.error is None, outcome.error
        return outcome.events

    def leave(self, pid: str, conn: str | None = None) -> list[dict[str, Any]]:
        return self.entry(
            "node", "system", "leave", {"pid": pid, "conn": conn or pid + "-c"}
        ).events

    def tick(self, at: int) -> list[dict[str, Any]]:
        return self.entry("node", "system", "tick", {}, at=at).events

    @property
    def ch(self) -> dict[str, Any]:
        ch: dict[str, Any] = self.state["channels"]
        return ch

    def live(self, lang: str) -> str | None:
        live: str | None = self.ch["channels"][lang]["live"]
        return live


def booths(room: Room | None = None) -> Room:
    room = room or Room()
    for pid, booth in ((ES1, "es"), (ES2, "es"), (FR1, "fr"), (RU1, "ru")):
        room.join(pid, "interpreter", booth=booth, pair=["en", booth])
    room.join("chair", "moderator")
    room.join("ana", "participant", lang="es")
    room.join("cap", "captioner")
    return room


# --- channels and listening ----------------------------------------------------------------


def test_init_from_config_with_fallback() -> None:
    room = Room(
        RoomConfig(
            id="r",
            title="R",
            floor="en",
            channels=("es",),
            fallback="silence",
            extra={"grace_seconds": 2},
        )
    )
    assert list(room.ch["channels"]) == ["es"]
    assert room.ch["fallback"] == "silence"
    assert room.ch["settings"]["grace_ms"] == 2000
    routes = audio.routes(room.state)
    assert routes.carries("es") is None, "nobody on air and a silent fallback: silence"
    assert routes.carries(audio.FLOOR) == audio.FLOOR
    room.roles["bob"] = "participant"
    room.join("bob", lang="es")
    assert audio.routes(room.state).hearing("bob", "participant") == (None, None)


def test_choice_is_kept_per_person_across_reconnects() -> None:
    room = booths()
    assert room.ch["choice"]["ana"] == "es", "a first visit hears the invite's language"
    assert channels.choice_of(room.state, "ana") == "es"
    room.join("bob")
    assert channels.choice_of(room.state, "bob") == channels.ORIGINAL
    room.do("bob", "channel.choose", {"lang": "fr"})
    assert audio.routes(room.state).hearing("bob", "participant") == (audio.FLOOR, None), (
        "nobody on air in fr: the original, once"
    )
    room.leave("bob")
    room.join("bob", conn="bob-2")
    assert room.ch["choice"]["bob"] == "fr"
    room.do("ana", "channel.choose", {"lang": "original"})
    room.leave("ana")
    room.join("ana", lang="es", conn="ana-2")
    assert room.ch["choice"]["ana"] == "original", "an explicit choice beats the default"


def test_choice_is_private_to_the_listener_interpreters_and_chair() -> None:
    room = booths()
    events = room.do("ana", "channel.choose", {"lang": "fr"})
    assert events[0]["to"] == ["pid:ana", "role:interpreter", "role:moderator"]
    bob = {"pid": "bob", "role": "participant"}
    assert fold.view(room.state, bob)["channels"]["choice"] == {}
    chair = {"pid": "chair", "role": "moderator"}
    assert fold.view(room.state, chair)["channels"]["choice"]["ana"] == "fr"


def test_moderator_adds_a_channel_live() -> None:
    room = booths()
    room.do("chair", "channel.add", {"lang": "de"})
    assert room.live("de") is None and "de" in room.ch["captions"]
    room.join("de1", "interpreter", booth="de", pair=["en", "de"])
    room.do("de1", "air.take")
    assert room.live("de") == "de1"
    assert room.refused("chair", "channel.add", {"lang": "de"}) == "channel_exists"
    assert room.refused("chair", "channel.add", {"lang": "en"}) == "floor_language"
    assert room.refused("chair", "channel.add", {"lang": "Deutsch!"}) == "bad_args"
    assert room.refused("ana", "channel.add", {"lang": "it"}) == "forbidden"
    for i in range(channels.MAX_CHANNELS - 4):
        room.do(
            "chair",
            "channel.add",
            {
                "lang": "x"
                + "abcdefghijklmnopqrstuvwxyz"[i % 26]
                + "abcdefghijklmnopqrstuvwxyz"[i // 26]
            },
        )
    assert room.refused("chair", "channel.add", {"lang": "it"}) == "too_many_channels"


def test_choose_unknown_channel() -> None:
    room = booths()
    assert room.refused("ana", "channel.choose", {"lang": "zz"}) == "no_such_channel"
    assert room.refused("ana", "channel.choose", {}) == "bad_args"


# --- on air and handover -------------------------------------------------------------------


def test_take_free_channel_is_immediate_and_routes_follow() -> None:
    room = booths()
    assert audio.routes(room.state).hearing("ana", "participant") == (audio.FLOOR, None)
    room.do(ES1, "air.take")
    assert room.live("es") == ES1 == channels.live(room.state, "es")
    routes = audio.routes(room.state)
    assert routes.feeds(ES1, "es") and not routes.feeds(ES2, "es")
    assert routes.hearing("ana", "participant") == ("es", audio.FLOOR)
    assert room.refused(ES1, "air.take") == "already_on_air"


def test_going_live_in_an_occupied_channel_needs_a_handover() -> None:
    room = booths()
    room.do(ES1, "air.take")
    assert room.refused(ES2, "air.take") == "channel_occupied"
    assert room.live("es") == ES1


def test_request_accept_is_one_swap_event() -> None:
    room = booths()
    room.do(ES1, "air.take")
    room.do(ES2, "handover.request")
    assert room.ch["channels"]["es"]["handover"]["kind"] == "request"
    events = room.do(ES1, "handover.accept")
    assert [e["type"] for e in events] == ["air.handed"]
    assert events[0]["outgoing"] == ES1 and events[0]["incoming"] == ES2
    assert room.live("es") == ES2 and room.ch["channels"]["es"]["handover"] is None


def test_offer_accept_and_decline_and_cancel() -> None:
    room = booths()
    room.do(ES1, "air.take")
    room.do(ES1, "handover.offer")
    assert room.ch["channels"]["es"]["handover"]["answerer"] == ES2
    room.do(ES2, "handover.decline")
    assert room.live("es") == ES1 and room.ch["channels"]["es"]["handover"] is None
    room.do(ES1, "handover.offer", {"partner": ES2})
    room.do(ES1, "handover.cancel")
    assert room.ch["channels"]["es"]["handover"] is None
    room.do(ES1, "handover.offer")
    room.do(ES2, "handover.accept")
    assert room.live("es") == ES2


def test_accepting_a_handover_nobody_asked_for() -> None:
    room = booths()
    room.do(ES1, "air.take")
    assert room.refused(ES2, "handover.accept") == "no_handover"
    assert room.refused(ES1, "handover.accept") == "no_handover"
    room.do(ES2, "handover.request")
    assert room.refused(ES2, "handover.accept") == "no_handover", "one's own request"
    assert room.refused(ES2, "handover.decline") == "no_handover"
    assert room.refused(ES1, "handover.cancel") == "no_handover"


def test_handover_rules() -> None:
    room = booths()
    assert room.refused(ES2, "handover.request") == "channel_free"
    assert room.refused(ES1, "handover.offer") == "not_on_air"
    room.do(ES1, "air.take")
    assert room.refused(ES1, "handover.request") == "already_on_air"
    room.do(ES2, "handover.request")
    assert room.refused(ES2, "handover.request") == "handover_pending"
    assert room.refused(ES1, "handover.offer") == "handover_pending"
    room.do(ES1, "handover.decline")
    assert room.refused(ES1, "handover.offer", {"partner": FR1}) == "no_partner"
    room.leave(ES2)
    assert room.refused(ES1, "handover.offer") == "no_partner"


def test_offer_needs_a_name_with_several_partners() -> None:
    room = booths()
    room.join(ES3, "interpreter", booth="es", pair=["en", "es"])
    room.do(ES1, "air.take")
    assert room.refused(ES1, "handover.offer") == "bad_args"
    room.do(ES1, "handover.offer", {"partner": ES3})
    assert room.refused(ES2, "handover.accept") == "no_handover"
    room.do(ES3, "handover.accept")
    assert room.live("es") == ES3


def test_pending_handover_expires() -> None:
    room = booths()
    room.do(ES1, "air.take")
    room.do(ES2, "handover.request")
    expires = room.ch["channels"]["es"]["handover"]["expires"]
    assert fold.next_deadline(room.state) == expires
    # an accept decided after the expiry is refused even before the tick folds
    assert room.refused(ES1, "handover.accept", at=expires) == "no_handover"
    assert [e["type"] for e in room.tick(expires)] == ["handover.expired"]
    assert room.ch["channels"]["es"]["handover"] is None
    assert fold.next_deadline(room.state) is None
    room.do(ES2, "handover.request")  # a new one may follow


def test_interpreter_acting_on_another_booth() -> None:
    room = booths()
    room.do(FR1, "air.take")
    for cmd in (
        "air.take",
        "air.release",
        "handover.request",
        "handover.offer",
        "handover.accept",
        "handover.decline",
        "handover.cancel",
    ):
        assert room.refused(ES1, cmd, {"lang": "fr"}) == "not_your_booth", cmd
    assert room.refused(ES1, "caption.post", {"lang": "fr", "text": "x"}) == "not_your_booth"
    assert room.refused(ES1, "chat.post", {"chat": "fr", "text": "x"}) == "not_your_booth"
    room.join("x1", "interpreter")  # an interpreter invite without a booth
    assert room.refused("x1", "air.take") == "not_in_booth"
    room.join("de1", "interpreter", booth="de")  # a booth this room does not have
    assert room.refused("de1", "air.take") == "no_such_channel"
    assert room.refused("ana", "air.take") == "forbidden"


def test_release_and_clear() -> None:
    room = booths()
    assert room.refused(ES1, "air.release") == "not_on_air"
    room.do(ES1, "air.take")
    room.do(ES1, "air.release")
    assert room.live("es") is None
    assert room.ch["channels"]["es"]["last_off"]["reason"] == "released"
    room.do(ES2, "air.take")
    room.do("chair", "booth.clear", {"lang": "es"})
    assert room.live("es") is None
    assert room.ch["channels"]["es"]["last_off"] == {"pid": ES2, "reason": "cleared", "ts": room.ts}
    assert room.refused("chair", "booth.clear", {"lang": "es"}) == "not_on_air"


# --- disconnects ---------------------------------------------------------------------------


def test_live_interpreter_disconnect_goes_off_air_after_grace() -> None:
    room = booths()
    room.do(ES1, "air.take")
    room.do(ES2, "handover.request")
    events = room.leave(ES1)
    types = [e["type"] for e in events]
    assert types == ["person.left", "handover.cancelled", "booth.away"]
    away = room.ch["channels"]["es"]["away"]
    assert room.live("es") == ES1 and away["until"] == room.ts + channels.GRACE_MS
    assert fold.next_deadline(room.state) == away["until"]
    assert room.tick(away["until"] - 1) == []
    events = room.tick(away["until"])
    assert events == [
        {
            "type": "air.released",
            "lang": "es",
            "pid": ES1,
            "reason": "disconnected",
            "ts": away["until"],
            "by": None,
        }
    ]
    assert room.live("es") is None


def test_reconnect_within_grace_keeps_the_air() -> None:
    room = booths()
    room.do(ES1, "air.take")
    room.do(ES1, "booth.cough", {"on": True})
    room.leave(ES1)
    assert room.ch["channels"]["es"]["cough"] is False, "no cough held by a gone key"
    events = room.join(ES1, "interpreter", conn="es1-again", booth="es", pair=["en", "es"])
    assert [e["type"] for e in events] == ["person.joined", "booth.back"]
    assert room.ch["channels"]["es"]["away"] is None
    assert room.tick(room.ts + channels.GRACE_MS) == []
    assert room.live("es") == ES1


def test_second_tab_closing_is_not_a_disconnect() -> None:
    room = booths()
    room.join(ES1, "interpreter", conn="tab2", booth="es", pair=["en", "es"])
    room.do(ES1, "air.take")
    room.leave(ES1, "tab2")
    assert room.ch["channels"]["es"]["away"] is None


def test_partner_takes_over_from_a_disconnected_live_one() -> None:
    room = booths()
    room.do(ES1, "air.take")
    room.leave(ES1)
    events = room.do(ES2, "air.take")
    assert events[0]["replaced"] == ES1 and room.live("es") == ES2
    assert room.ch["channels"]["es"]["away"] is None
    assert fold.next_deadline(room.state) is None


# --- input, relay, output, cough, signals --------------------------------------------------


def test_relay_and_relay_loop_refused() -> None:
    room = booths()
    room.do(ES1, "air.take")
    room.do(RU1, "air.take")
    room.do(RU1, "booth.input", {"input": "es"})
    assert room.ch["interpreters"][RU1]["input"] == "es"
    code = room.refused(ES1, "booth.input", {"input": "ru"})
    assert code == "relay_loop"
    assert room.refused(ES1, "booth.input", {"input": "es"}) == "relay_loop"
    assert room.refused(ES1, "booth.input", {"input": "zz"}) == "no_such_channel"
    # a longer chain: fr ← ru ← es; es relaying fr would close it
    room.do(FR1, "air.take")
    room.do(FR1, "booth.input", {"input": "ru"})
    assert room.refused(ES1, "booth.input", {"input": "fr"}) == "relay_loop"
    # the partner, not on air, may not prepare a loop either ...
    assert room.refused(ES2, "booth.input", {"input": "ru"}) == "relay_loop"
    room.do(ES1, "booth.input", {"input": "floor"})  # no change: no event
    assert room.do(ES1, "booth.input", {"input": "floor"}) == []


def test_going_on_air_into_a_relay_loop_is_refused() -> None:
    room = booths()
    room.do(ES1, "air.take")
    room.do(ES2, "booth.input", {"input": "ru"})  # fine: nobody is on air in ru
    room.do(RU1, "air.take")
    room.do(RU1, "booth.input", {"input": "es"})  # fine: es1 listens to the floor
    room.do(ES1, "handover.offer")
    assert room.refused(ES2, "handover.accept") == "relay_loop"
    room.do(ES2, "booth.input", {"input": "floor"})
    room.do(ES2, "handover.accept")
    assert room.live("es") == ES2


def test_output_language_within_the_pair() -> None:
    room = booths()
    assert room.ch["interpreters"][ES1]["out"] == "es"
    room.do(ES1, "booth.output", {"lang": "en"})
    assert room.ch["interpreters"][ES1]["out"] == "en"
    assert room.refused(ES1, "booth.output", {"lang": "fr"}) == "not_in_pair"


def test_cough_is_for_the_live_interpreter_and_repeats_are_no_change() -> None:
    room = booths()
    assert room.refused(ES1, "booth.cough", {"on": True}) == "not_on_air"
    room.do(ES1, "air.take")
    room.do(ES1, "booth.cough", {"on": True})
    assert channels.coughing(room.state, "es")
    routes = audio.routes(room.state)
    assert not routes.feeds(ES1, "es"), "the cough key drops the live interpreter's packets"
    assert routes.hearing("ana", "participant") == ("es", audio.FLOOR), "silence, not the floor"
    assert room.do(ES1, "booth.cough", {"on": True}) == []
    assert room.refused(ES2, "booth.cough", {"on": True}) == "not_on_air"
    assert room.refused(ES1, "booth.cough", {"on": "yes"}) == "bad_args"
    room.do(ES2, "handover.request")
    room.do(ES1, "handover.accept")
    assert room.ch["channels"]["es"]["cough"] is False, "a handover clears the cough"


def test_signals_go_to_chair_speakers_and_booth() -> None:
    room = booths()
    room.do("chair", "floor.grant", {"pid": "ana"})
    events = room.do(ES1, "booth.signal", {"preset": "slow_down"})
    assert set(events[0]["to"]) == {"role:moderator", "booth:es", "pid:ana"}
    assert room.refused(ES2, "booth.signal", {"preset": "slow_down"}) == "signal_repeated"
    room.do(ES2, "booth.signal", {"preset": "speak_up"})
    room.do(ES2, "booth.signal", {"preset": "slow_down"}, at=room.ts + 3000)
    assert room.refused(ES1, "booth.signal", {"preset": "sing"}) == "bad_args"
    ana = fold.view(room.state, {"pid": "ana", "role": "participant"})["channels"]["signals"]
    assert [s["preset"] for s in ana] == ["slow_down", "speak_up", "slow_down"]
    bob = fold.view(room.state, {"pid": "bob", "role": "participant"})["channels"]["signals"]
    assert bob == []


def test_a_copy_that_sees_some_signals_numbers_them_like_the_room() -> None:
    """The event carries the room's number, and a copy keeps what the room keeps of its own."""
    room = booths()
    fr = {"pid": FR1, "role": "interpreter", "booth": "fr"}
    copy_ = fold.view(room.state, fr)
    start = len(room.log)
    for i in range(channels.SIGNAL_KEEP + 3):
        lang = ES1 if i % 2 else FR1
        room.do(lang, "booth.signal", {"preset": channels.PRESETS[i % 5]}, at=room.ts + 4000)
    for _, outcome in room.log[start:]:
        fold.apply_events(copy_, [e for e in outcome.events if fold.visible(e, fr)])
    expected = fold.view(room.state, fr)["channels"]["signals"]
    assert copy_["channels"]["signals"] == expected
    assert [s["n"] for s in expected] == list(range(5, channels.SIGNAL_KEEP + 4, 2))


# --- chats ---------------------------------------------------------------------------------


def test_booth_chat_and_all_interpreters_chat() -> None:
    room = booths()
    events = room.do(ES1, "chat.post", {"chat": "booth", "text": " hola "})
    assert events[0]["to"] == ["interpreters:es", "role:moderator"] and events[0]["chat"] == "es"
    room.do(FR1, "chat.post", {"chat": "all", "text": "sound check?"})
    room.do("chair", "chat.post", {"chat": "es", "text": "coffee in 5"})
    assert [m["text"] for m in room.ch["chats"]["es"]] == ["hola", "coffee in 5"]
    es2 = fold.view(room.state, {"pid": ES2, "role": "interpreter", "booth": "es"})
    assert set(es2["channels"]["chats"]) == {"all", "es"}
    assert fold.view(room.state, {"pid": "ana", "role": "participant"})["channels"]["chats"] == {}
    assert set(
        fold.view(room.state, {"pid": "chair", "role": "moderator"})["channels"]["chats"]
    ) == {"all", "es", "fr", "ru"}
    assert room.refused("chair", "chat.post", {"chat": "booth", "text": "x"}) == "bad_args"
    assert room.refused("ana", "chat.post", {"chat": "all", "text": "x"}) == "forbidden"
    assert room.refused(ES1, "chat.post", {"chat": "all", "text": "   "}) == "bad_args"
    assert room.refused(ES1, "chat.post", {"chat": "all", "text": "x" * 1001}) == "bad_args"


def test_chat_keeps_the_last_500() -> None:
    room = booths()
    for i in range(505):
        room.do(ES1, "chat.post", {"chat": "all", "text": f"m{i}"})
    chat = room.ch["chats"]["all"]
    assert len(chat) == 500 and chat[0]["text"] == "m5" and chat[-1]["n"] == 505


# --- captions ------------------------------------------------------------------------------


def test_captions_from_live_interpreter_and_captioner() -> None:
    room = booths()
    assert room.refused(ES1, "caption.post", {"lang": "es", "text": "hola"}) == "not_on_air"
    room.do(ES1, "air.take")
    room.do(ES1, "caption.post", {"lang": "es", "text": "Buenos\n días"})
    room.do("cap", "caption.post", {"lang": "original", "text": "Good morning"})
    assert [(x["n"], x["text"]) for x in room.ch["captions"]["es"]] == [(1, "Buenos días")]
    assert room.ch["captions"]["original"][0]["text"] == "Good morning"
    ana = fold.view(room.state, {"pid": "ana", "role": "participant"})
    assert ana["channels"]["captions"]["es"][0]["text"] == "Buenos días", "late joiners"


def test_caption_bad_input() -> None:
    room = booths()
    room.do(ES1, "air.take")
    assert room.refused("ana", "caption.post", {"lang": "es", "text": "x"}) == "forbidden"
    assert room.refused("chair", "caption.post", {"lang": "es", "text": "x"}) == "forbidden"
    big = "é" * 513  # 1026 bytes in UTF-8, 513 characters
    assert room.refused(ES1, "caption.post", {"lang": "es", "text": big}) == "caption_too_long"
    room.do(ES1, "caption.post", {"lang": "es", "text": "é" * 512})  # exactly 1 KiB
    assert room.refused(ES1, "caption.post", {"lang": "es", "text": " \n "}) == "bad_args"
    assert room.refused(ES1, "caption.post", {"lang": "es", "text": 5}) == "bad_args"
    assert room.refused("cap", "caption.post", {"lang": "zz", "text": "x"}) == "no_such_channel"


def test_caption_rate_limit_is_deterministic_from_entry_time() -> None:
    room = booths()
    t = room.ts + 1000
    for i in range(channels.CAPTION_RATE):
        room.do("cap", "caption.post", {"lang": "es" if i % 2 else "fr", "text": f"l{i}"}, at=t + i)
    code = room.refused("cap", "caption.post", {"lang": "ru", "text": "too fast"}, at=t + 999)
    assert code == "caption_too_fast"
    room.do("cap", "caption.post", {"lang": "ru", "text": "ok again"}, at=t + 1000)


def test_captioner_invite_limited_to_its_channel() -> None:
    room = booths()
    room.join("capfr", "captioner", booth="fr")
    room.join("capfloor", "captioner", booth="en")
    room.do("capfr", "caption.post", {"lang": "fr", "text": "bonjour"})
    assert room.refused("capfr", "caption.post", {"lang": "es", "text": "x"}) == "not_your_booth"
    room.do("capfloor", "caption.post", {"lang": "original", "text": "hello"})
    assert room.refused("capfloor", "caption.post", {"lang": "fr", "text": "x"}) == "not_your_booth"


def test_captions_keep_the_last_lines() -> None:
    room = booths()
    for i in range(60):
        room.do("cap", "caption.post", {"lang": "fr", "text": f"l{i}"}, at=room.ts + 300)
    lines = room.ch["captions"]["fr"]
    assert len(lines) == channels.CAPTION_KEEP and lines[-1]["n"] == 60


def test_client_view_applies_the_same_events() -> None:
    """A client's copy (a trimmed view + events) ends like the view of the full state."""
    room = booths()
    person = {"pid": "ana", "role": "participant"}
    copy_ = fold.view(room.state, person)
    start = len(room.log)
    room.do(ES1, "air.take")
    room.do("chair", "channel.add", {"lang": "de"})
    room.do("ana", "channel.choose", {"lang": "de"})
    room.do(ES1, "caption.post", {"lang": "es", "text": "hola"})
    room.do(ES1, "chat.post", {"chat": "all", "text": "hidden"})
    for _, outcome in room.log[start:]:
        fold.apply_events(copy_, [e for e in outcome.events if fold.visible(e, person)])
    copy_["meta"] = None
    expected = fold.view(room.state, person)
    expected["meta"] = None
    assert copy_ == expected


# --- properties ----------------------------------------------------------------------------

PEOPLE = (ES1, ES2, ES3)
actions = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "take",
                "take",
                "release",
                *["request"] * 4,
                *["offer"] * 3,
                *["accept"] * 5,
                "decline",
                "cancel",
                "leave",
                "join",
                "cough",
                "input",
                "input",
                "ru_input",
                "wait",
                "tick",
                "clear",
            ]
        ),
        st.sampled_from([*PEOPLE, "live", "target", "target", "asker", "partner", "partner"]),
        st.sampled_from([0, 50, 50, 1_000, 5_000, 16_000, 31_000]),  # ms since the last entry
        st.sampled_from(["floor", "ru", "fr", *PEOPLE]),
    ),
    min_size=10,
    max_size=80,
)


def _assert_invariants(room: Room, vouched: dict[str, set[str]]) -> None:
    ch = room.ch
    live_anywhere: list[str] = []
    for lang, channel in ch["channels"].items():
        live = channel["live"]
        if live is None:
            assert channel["handover"] is None and channel["away"] is None
            assert channel["cough"] is False
            continue
        live_anywhere.append(live)
        assert ch["interpreters"][live]["booth"] == lang, "live only in one's own booth"
        assert live in vouched[lang], f"{live} is on air in {lang} without taking/accepting"
        online = rooms.is_online(room.state, live)
        assert online or channel["away"] is not None, "a gone live one has a grace running"
        if channel["away"] is not None:
            assert channel["cough"] is False
        h = channel["handover"]
        if h is not None:
            assert live in (h["asker"], h["answerer"]) and h["asker"] != h["answerer"]
            assert (h["kind"] == "offer") == (h["asker"] == live)
            other = h["answerer"] if h["asker"] == live else h["asker"]
            assert ch["interpreters"][other]["booth"] == lang
    assert len(live_anywhere) == len(set(live_anywhere)), "nobody on air twice"
    for lang in ch["channels"]:  # no relay loop among live channels
        seen = [lang]
        cur = lang
        while (live := ch["channels"][cur]["live"]) is not None:
            nxt = ch["interpreters"][live]["input"]
            if nxt == "floor":
                break
            assert nxt not in seen, f"relay loop {seen + [nxt]}"
            seen.append(nxt)
            cur = nxt


def _resolve(room: Room, who: str) -> str:
    """A person, or the one playing a part in the es booth now (so that accepts, declines
    and offers often meet a pending handover instead of being refused)."""
    channel = room.ch["channels"]["es"]
    h = channel["handover"] or {}
    partner = next(
        (p for p in PEOPLE if p != channel["live"] and rooms.is_online(room.state, p)), None
    )
    found = {
        "live": channel["live"],
        "target": h.get("answerer"),
        "asker": h.get("asker"),
        "partner": partner,
    }.get(who, who)
    return found or ES1


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions)
def test_booth_state_machine_properties(steps: list[tuple[str, str, int, str]]) -> None:
    room = Room()
    for pid in PEOPLE:
        room.join(pid, "interpreter", booth="es", pair=["en", "es"])
    for pid, booth in (("ru1", "ru"), ("fr1", "fr")):
        room.join(pid, "interpreter", booth=booth, pair=["en", booth])
    room.join("chair", "moderator")
    room.do("ru1", "air.take")
    room.do("ru1", "booth.input", {"input": "es"})
    online = set(PEOPLE)
    # who went on air by their own act: took it, had their request accepted, accepted an offer
    vouched: dict[str, set[str]] = {"es": set(), "ru": {"ru1"}, "fr": set()}
    cmds = {
        "take": "air.take",
        "release": "air.release",
        "request": "handover.request",
        "offer": "handover.offer",
        "accept": "handover.accept",
        "decline": "handover.decline",
        "cancel": "handover.cancel",
    }
    for action, who, dt, source in steps:
        at = room.ts + 1 + dt
        before = copy.deepcopy(room.state["channels"]["channels"]["es"])
        pid = _resolve(room, who)
        if action in cmds:
            if pid not in online:
                continue
            args = {"partner": source} if action == "offer" and source in PEOPLE else {}
            outcome = room.entry(pid, "interpreter", cmds[action], args, at=at)
        elif action == "cough":
            if pid not in online:
                continue
            outcome = room.entry(
                pid, "interpreter", "booth.cough", {"on": source != "floor"}, at=at
            )
        elif action == "input":
            if pid not in online:
                continue
            source = source if source not in PEOPLE else "ru"
            outcome = room.entry(pid, "interpreter", "booth.input", {"input": source}, at=at)
        elif action == "ru_input":  # the ru booth relays es, or listens to the floor
            ru_source = "floor" if source in ("floor", "fr", ES1) else "es"
            outcome = room.entry("ru1", "interpreter", "booth.input", {"input": ru_source}, at=at)
        elif action == "leave":
            if pid not in online:
                continue
            online.discard(pid)
            outcome = room.entry("node", "system", "leave", {"pid": pid, "conn": pid + "-c"}, at=at)
        elif action == "join":
            if pid in online:
                continue
            online.add(pid)
            outcome = room.entry(
                "node",
                "system",
                "join",
                {
                    "pid": pid,
                    "name": pid,
                    "role": "interpreter",
                    "conn": pid + "-c",
                    "booth": "es",
                    "pair": ["en", "es"],
                },
                at=at,
            )
        elif action == "clear":
            outcome = room.entry("chair", "moderator", "booth.clear", {"lang": "es"}, at=at)
        elif action == "tick":
            deadline = fold.next_deadline(room.state)
            outcome = room.entry("node", "system", "tick", {}, at=max(at, deadline or at))
        else:  # wait: time passes with nothing in the log
            room.ts = at
            continue
        for event in outcome.events:
            if event["type"] == "air.taken":
                assert event["pid"] == pid and action == "take"
                # no overlap: only a free channel, or one whose live interpreter is gone
                assert before["live"] is None or before["away"] is not None
                vouched[event["lang"]].add(pid)
            elif event["type"] == "air.handed":
                h = before["handover"]
                assert h is not None and event["outgoing"] == before["live"]
                # request: the live one (actor) accepted the requester; offer: actor accepted
                assert action == "accept" and pid == h["answerer"]
                assert event["incoming"] == (h["asker"] if h["kind"] == "request" else pid)
                vouched["es"].add(event["incoming"])
        if outcome.error is not None:
            assert room.state["channels"]["channels"]["es"] == before
        _assert_invariants(room, vouched)
        # vouched is "ever took or accepted"; forget those who went off air since
        for lang, channel in room.ch["channels"].items():
            vouched[lang] = {channel["live"]} if channel["live"] else set()


@settings(max_examples=100, deadline=None)
@given(actions)
def test_replicas_folding_the_same_log_agree(steps: list[tuple[str, str, int, str]]) -> None:
    """Two replicas, one from the start and one from a mid-way snapshot, end identical."""
    room = Room()
    for pid in PEOPLE:
        room.join(pid, "interpreter", booth="es", pair=["en", "es"])
    snapshot_at = len(steps) // 2
    snapshot = None
    for i, (action, who, dt, _) in enumerate(steps):
        pid = _resolve(room, who)
        if i == snapshot_at:
            snapshot = (len(room.log), fold.from_snapshot(room.state))
        at = room.ts + 1 + dt
        name = {
            "take": "air.take",
            "request": "handover.request",
            "offer": "handover.offer",
            "accept": "handover.accept",
            "decline": "handover.decline",
        }.get(action)
        if name:
            room.entry(pid, "interpreter", name, {}, at=at)
        elif action == "leave":
            room.entry("node", "system", "leave", {"pid": pid, "conn": pid + "-c"}, at=at)
        elif action == "join":
            room.entry(
                "node",
                "system",
                "join",
                {"pid": pid, "name": pid, "role": "interpreter", "conn": pid + "-c", "booth": "es"},
                at=at,
            )
        elif action == "tick":
            room.entry("node", "system", "tick", {}, at=at)
    other = Room()
    start = 0
    if snapshot is not None:
        start, other.state = snapshot[0], snapshot[1]
    for n, (entry, _) in enumerate(room.log[start:], start + 1):
        fold.fold(other.state, f"{n}-0", entry)
    assert fold.digest(other.state) == fold.digest(room.state)


@pytest.mark.parametrize("lang", ["es", "original"])
def test_original_fallback_carries_the_floor(lang: str) -> None:
    room = booths()
    room.do("ana", "channel.choose", {"lang": lang})
    assert audio.routes(room.state).hearing("ana", "participant") == (audio.FLOOR, None)
