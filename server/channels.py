"""Language channels and interpreter booths: who listens to what, who is on air. Pure.

Rules (ISO 20109 §5.7–5.11, and what Interprefy/KUDO consoles do): exactly one interpreter
on air per channel; taking a free channel is immediate, taking an occupied one is a
handover — request (or offer) → accept, and the swap is one event, so there is never a gap
nor an overlap; a pending handover expires; a live interpreter who disconnects goes off air
after a grace period; an interpreter listens to the floor or relays another channel, and a
relay loop between live channels is refused.

State (``state["channels"]``, :class:`state.ChannelsState`). Other slices read it through
the queries below (:func:`live`, :func:`coughing`, :func:`choice_of`, …), never directly::

    floor        "en"                    the floor language
    fallback     "original" | "silence"  what a channel carries while nobody is on air
    settings     {handover_ms, grace_ms}
    channels     {lang: {
        lang, added: ts | None (None: from the config),
        live:      pid | None            the one interpreter on air
        since:     ts | None             when ``live`` went on air
        cough:     bool                  the live interpreter holds the cough key (muted)
        handover:  None | {kind: "request"|"offer", asker: pid, answerer: pid, ts, expires}
                   request: a partner asks the live one; offer: the live one offers
        away:      None | {pid, since, until}   ``live`` disconnected; off air at ``until``
        last_off:  None | {pid, reason, ts}     why the last interpreter went off air
    }}
    interpreters {pid: {pid, booth: lang, pair: [lang…], input: "floor" | lang, out: lang}}
                 ``input``: what they listen to — the floor or a relay channel (pivot);
                 ``out``: the language they speak now, one of ``pair`` (retour)
    choice       {pid: "original" | lang}   a missing pid listens to the original
    captions     {"original" | lang: [{n, pid, text, ts}…]}   the last CAPTION_KEEP lines
    chats        {"all" | lang: [{n, pid, text, ts}…]}        the last CHAT_KEEP messages
    signals      [{n, lang, pid, preset, ts, to}…]             the last SIGNAL_KEEP
    sign         [lang…]   the channels that are sign-language video (config ``sign``)

A sign-language channel (e.g. ``ils``, International Sign) is a channel like the others for
its booth: one signer on air, handover, grace period — the same machinery, not a copy. It
carries no audio (:func:`langs` lists only the spoken ones, which the audio routing reads),
nobody listens to it (``channel.choose`` refuses it: viewers pick it on their page, the
stage shows its signer), and no spoken booth relays from it.

Captions, chats and signals live here, on the log, rather than on the bus: the log orders
them across nodes and keeps the last lines for whoever joins late (docs/protocol.md).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any, Literal

from . import rooms
from .errors import BadArgs, Refused
from .events import (
    AirHanded,
    AirReleased,
    AirTaken,
    BoothAssigned,
    BoothAway,
    BoothBack,
    BoothSignal,
    CaptionPosted,
    ChannelAdded,
    ChannelChosen,
    ChatPosted,
    Cough,
    HandoverCancelled,
    HandoverDeclined,
    HandoverExpired,
    HandoverOffered,
    HandoverRequested,
    InputSelected,
    OutputSelected,
)
from .state import Channel, ChannelsState, Handover, Interpreter, Line, Person
from .types import (
    CAPTIONER,
    EVERYONE,
    INTERPRETER,
    MODERATOR,
    STAFF,
    Actor,
    Command,
    Event,
    RoomConfig,
    Slice,
    State,
    Viewer,
    arg_str,
    by_name,
)

ORIGINAL = "original"
FLOOR = "floor"
LANG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
MAX_CHANNELS = 32
HANDOVER_MS = 30_000
"""A handover request or offer nobody answers expires after this long."""
GRACE_MS = 15_000
"""A live interpreter who disconnects stays on air this long (reconnects take 3–4 s)."""
CAPTION_BYTES = 1024
CAPTION_RATE = 4
"""At most this many caption lines per sender within CAPTION_WINDOW_MS."""
CAPTION_WINDOW_MS = 1_000
CAPTION_KEEP = 50
CHAT_KEEP = 500
CHAT_MAX = 1000
SIGNAL_KEEP = 20
SIGNAL_REPEAT_MS = 3_000
"""The same preset from the same booth within this long is refused (no chair spam)."""
PRESETS = ("slow_down", "speak_up", "no_sound", "use_mic", "pause")
"""Booth → chair and speakers: please slow down / speak up / we hear nothing / please use
your microphone / we need a moment (ISO 20109 §5.11 slow-down button and messages)."""
BOOTH_ROLES = frozenset({INTERPRETER})


# --- state ---------------------------------------------------------------------------------


def new_channel(lang: str, added: int | None = None) -> Channel:
    return {
        "lang": lang,
        "added": added,
        "live": None,
        "since": None,
        "cough": False,
        "handover": None,
        "away": None,
        "last_off": None,
    }


def init(config: RoomConfig) -> ChannelsState:
    extra = config.extra
    sign = [x for x in extra.get("sign", ()) if x not in config.channels]
    both = (*config.channels, *sign)
    handover_ms = _ms(extra.get("handover_seconds"), HANDOVER_MS)
    grace_ms = _ms(extra.get("grace_seconds"), GRACE_MS)
    return {
        "floor": config.floor,
        "fallback": config.fallback,
        "settings": {"handover_ms": handover_ms, "grace_ms": grace_ms},
        "channels": {lang: new_channel(lang) for lang in both},
        "interpreters": {},
        "choice": {},
        "captions": {ORIGINAL: [], **{lang: [] for lang in both}},
        "chats": {"all": [], **{lang: [] for lang in both}},
        "signals": [],
        "sign": sign,
    }


def _ms(seconds: Any, default: int) -> int:
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0:
        return int(seconds * 1000)
    return default


# --- queries: what other slices read of the channels (never the dicts directly) -------------


def langs(state: State) -> list[str]:
    """The room's spoken channels, in the order they were added (the config's first)."""
    sign = state["channels"]["sign"]
    return [lang for lang in state["channels"]["channels"] if lang not in sign]


def signs(state: State) -> list[str]:
    """The room's sign-language channels (video: their signer is seen, not heard)."""
    return list(state["channels"]["sign"])


def live(state: State, lang: str) -> str | None:
    """Who is on air in channel ``lang`` (``None``: nobody, or no such channel)."""
    channel = state["channels"]["channels"].get(lang)
    return None if channel is None else channel["live"]


def coughing(state: State, lang: str) -> bool:
    """Whether ``lang``'s live interpreter holds the cough key."""
    channel = state["channels"]["channels"].get(lang)
    return channel is not None and channel["live"] is not None and channel["cough"]


def fallback(state: State) -> str:
    """What a channel with nobody on air carries: ``original`` or ``silence``."""
    return state["channels"]["fallback"]


def choice_of(state: State, pid: str) -> str:
    """What ``pid`` listens to: ``original`` (also when they never chose) or a channel."""
    return state["channels"]["choice"].get(pid, ORIGINAL)


def choices(state: State) -> Mapping[str, str]:
    """Every explicit choice, by pid."""
    return state["channels"]["choice"]


def interpreter(state: State, pid: str) -> Interpreter | None:
    """``pid``'s booth, languages, input and output, if they are assigned to a booth."""
    return state["channels"]["interpreters"].get(pid)


def interpreters(state: State) -> Mapping[str, Interpreter]:
    return state["channels"]["interpreters"]


# --- lookups that refuse -------------------------------------------------------------------


def _channel(state: State, lang: str) -> Channel:
    found = state["channels"]["channels"].get(lang)
    if found is None:
        raise Refused(f"this room has no {lang!r} channel", code="no_such_channel")
    return found


def _booth_of(state: State, actor: Actor, lang: str | None) -> tuple[Interpreter, str]:
    """The actor's interpreter record and booth; refuse another booth or none."""
    me = state["channels"]["interpreters"].get(actor.pid)
    if me is None:
        raise Refused("you are not assigned to a booth in this room", code="not_in_booth")
    if lang is not None and lang != me["booth"]:
        raise Refused(
            f"you are assigned to the {me['booth']!r} booth, not {lang!r}", code="not_your_booth"
        )
    _channel(state, me["booth"])
    return me, me["booth"]


def _pending(channel: Channel, ts: int) -> Handover | None:
    handover = channel["handover"]
    if handover is None or handover["expires"] <= ts:
        return None
    return handover


def _occupied(channel: Channel) -> bool:
    """Someone is on air and connected (a partner may take over from a disconnected one)."""
    return channel["live"] is not None and channel["away"] is None


def _relay_loop(state: State, booth: str, source: str) -> list[str] | None:
    """The loop that ``booth`` relaying ``source`` would close among live channels, if any."""
    ch = state["channels"]
    path = [booth, source]
    current = source
    while current != booth:
        channel = ch["channels"].get(current)
        if channel is None or channel["live"] is None:
            return None
        current = ch["interpreters"][channel["live"]]["input"]
        if current == FLOOR or (current in path and current != booth):
            return None
        path.append(current)
    return path


def _refuse_loop(state: State, booth: str, source: str) -> None:
    if source == FLOOR:
        return
    loop = _relay_loop(state, booth, source)
    if loop is not None:
        chain = " → ".join(loop)
        raise Refused(
            f"relay loop: {chain} (someone in that chain must take the floor)", code="relay_loop"
        )


# --- channels and listening ----------------------------------------------------------------


def check_lang(args: dict[str, Any]) -> dict[str, Any]:
    return {"lang": arg_str(args, "lang", max_len=20)}


def check_opt_lang(args: dict[str, Any]) -> dict[str, Any]:
    return {"lang": arg_str(args, "lang", max_len=20, required=False)}


def decide_choose(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    lang = args["lang"]
    if lang != ORIGINAL:
        _channel(state, lang)
        _not_sign(state, lang)
    return [_chosen(actor.pid, lang)]


def _not_sign(state: State, lang: str) -> None:
    if lang in state["channels"]["sign"]:
        raise Refused(
            f"{lang!r} is a sign-language channel: it is seen, not heard", code="sign_channel"
        )


def _chosen(pid: str, lang: str) -> ChannelChosen:
    return {
        "type": "channel.chosen",
        "pid": pid,
        "lang": lang,
        "to": ["pid:" + pid, "role:" + INTERPRETER, "role:" + MODERATOR],
    }


def decide_add(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    lang = args["lang"]
    ch = state["channels"]
    if not LANG.match(lang) or lang == ORIGINAL:
        raise BadArgs(f"not a language code: {lang!r}")
    if lang == ch["floor"]:
        raise Refused(f"{lang!r} is the floor language", code="floor_language")
    if lang in ch["channels"]:
        raise Refused(f"the {lang!r} channel exists already", code="channel_exists")
    if len(ch["channels"]) >= MAX_CHANNELS:
        raise Refused(f"a room has at most {MAX_CHANNELS} channels", code="too_many_channels")
    return [{"type": "channel.added", "lang": lang, "ts": ts, "by": actor.pid}]


def apply_chosen(state: State, event: ChannelChosen) -> None:
    state["channels"]["choice"][event["pid"]] = event["lang"]


def apply_added(state: State, event: ChannelAdded) -> None:
    ch = state["channels"]
    lang = event["lang"]
    ch["channels"][lang] = new_channel(lang, event["ts"])
    ch["captions"].setdefault(lang, [])
    if "all" in ch["chats"]:  # only where the chats are visible (a trimmed view has none)
        ch["chats"].setdefault(lang, [])


# --- on air --------------------------------------------------------------------------------


def decide_take(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    me, booth = _booth_of(state, actor, args["lang"])
    channel = _channel(state, booth)
    if channel["live"] == actor.pid:
        raise Refused("you are on air already", code="already_on_air")
    if _occupied(channel):
        raise Refused(
            f"{channel['live']} is on air in {booth!r}: ask for a handover", code="channel_occupied"
        )
    _refuse_loop(state, booth, me["input"])
    return [
        {
            "type": "air.taken",
            "lang": booth,
            "pid": actor.pid,
            "ts": ts,
            "replaced": channel["live"],
        }
    ]


def decide_release(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    _, booth = _booth_of(state, actor, args["lang"])
    if _channel(state, booth)["live"] != actor.pid:
        raise Refused("you are not on air", code="not_on_air")
    return [_off(booth, actor.pid, "released", ts, actor.pid)]


def decide_clear(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    lang = args["lang"]
    live = _channel(state, lang)["live"]
    if live is None:
        raise Refused(f"nobody is on air in {lang!r}", code="not_on_air")
    return [_off(lang, live, "cleared", ts, actor.pid)]


def _off(
    lang: str,
    pid: str,
    reason: Literal["released", "cleared", "disconnected"],
    ts: int,
    by: str | None,
) -> AirReleased:
    return {"type": "air.released", "lang": lang, "pid": pid, "reason": reason, "ts": ts, "by": by}


def _on_air(channel: Channel, pid: str | None, ts: int | None) -> None:
    channel["live"], channel["since"], channel["cough"] = pid, ts, False
    channel["handover"] = channel["away"] = None


def apply_taken(state: State, event: AirTaken) -> None:
    _on_air(state["channels"]["channels"][event["lang"]], event["pid"], event["ts"])


def apply_released(state: State, event: AirReleased) -> None:
    channel = state["channels"]["channels"][event["lang"]]
    _on_air(channel, None, None)
    channel["last_off"] = {"pid": event["pid"], "reason": event["reason"], "ts": event["ts"]}


# --- handover ------------------------------------------------------------------------------


def check_offer(args: dict[str, Any]) -> dict[str, Any]:
    return {**check_opt_lang(args), "partner": arg_str(args, "partner", max_len=64, required=False)}


def decide_request(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    _, booth = _booth_of(state, actor, args["lang"])
    channel = _channel(state, booth)
    if channel["live"] == actor.pid:
        raise Refused("you are on air already", code="already_on_air")
    if not _occupied(channel):
        raise Refused(f"nobody is on air in {booth!r}: take the air", code="channel_free")
    if _pending(channel, ts) is not None:
        raise Refused("a handover is already pending in this booth", code="handover_pending")
    live = channel["live"]
    assert live is not None  # occupied
    expires = ts + state["channels"]["settings"]["handover_ms"]
    requested: HandoverRequested = {
        "type": "handover.requested",
        "lang": booth,
        "asker": actor.pid,
        "answerer": live,
        "ts": ts,
        "expires": expires,
    }
    return [requested]


def decide_offer(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    _, booth = _booth_of(state, actor, args["lang"])
    channel = _channel(state, booth)
    if channel["live"] != actor.pid:
        raise Refused("you are not on air", code="not_on_air")
    if _pending(channel, ts) is not None:
        raise Refused("a handover is already pending in this booth", code="handover_pending")
    partners = [
        pid
        for pid, i in state["channels"]["interpreters"].items()
        if i["booth"] == booth and pid != actor.pid and rooms.is_online(state, pid)
    ]
    partner = args["partner"]
    if partner is None:
        if not partners:
            raise Refused("no partner of your booth is online", code="no_partner")
        if len(partners) > 1:
            raise BadArgs("several partners are online: say which one with 'partner'")
        partner = partners[0]
    elif partner not in partners:
        raise Refused(
            f"{partner!r} is not an online partner in the {booth!r} booth", code="no_partner"
        )
    expires = ts + state["channels"]["settings"]["handover_ms"]
    offered: HandoverOffered = {
        "type": "handover.offered",
        "lang": booth,
        "asker": actor.pid,
        "answerer": partner,
        "ts": ts,
        "expires": expires,
    }
    return [offered]


def decide_accept(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    _, booth = _booth_of(state, actor, args["lang"])
    channel = _channel(state, booth)
    pending = _pending(channel, ts)
    if pending is None or pending["answerer"] != actor.pid:
        raise Refused("nobody asked you for a handover", code="no_handover")
    incoming = pending["asker"] if pending["kind"] == "request" else actor.pid
    if not rooms.is_online(state, incoming):
        raise Refused("your partner is not connected", code="partner_offline")
    _refuse_loop(state, booth, state["channels"]["interpreters"][incoming]["input"])
    return [
        {
            "type": "air.handed",
            "lang": booth,
            "outgoing": channel["live"],
            "incoming": incoming,
            "ts": ts,
        }
    ]


def decide_decline(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    _, booth = _booth_of(state, actor, args["lang"])
    pending = _pending(_channel(state, booth), ts)
    if pending is None or pending["answerer"] != actor.pid:
        raise Refused("nobody asked you for a handover", code="no_handover")
    return [{"type": "handover.declined", "lang": booth, "by": actor.pid}]


def decide_cancel(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    _, booth = _booth_of(state, actor, args["lang"])
    pending = _pending(_channel(state, booth), ts)
    if pending is None or pending["asker"] != actor.pid:
        raise Refused("you have no pending handover", code="no_handover")
    return [{"type": "handover.cancelled", "lang": booth, "by": actor.pid, "reason": "cancelled"}]


def apply_asked(state: State, event: HandoverRequested | HandoverOffered) -> None:
    kind: Literal["request", "offer"] = (
        "request" if event["type"] == "handover.requested" else "offer"
    )
    state["channels"]["channels"][event["lang"]]["handover"] = {
        "kind": kind,
        "asker": event["asker"],
        "answerer": event["answerer"],
        "ts": event["ts"],
        "expires": event["expires"],
    }


def apply_handover_over(
    state: State, event: HandoverDeclined | HandoverCancelled | HandoverExpired
) -> None:
    state["channels"]["channels"][event["lang"]]["handover"] = None


def apply_handed(state: State, event: AirHanded) -> None:
    """The swap: one event, so listeners never hear two interpreters nor a gap."""
    _on_air(state["channels"]["channels"][event["lang"]], event["incoming"], event["ts"])


# --- disconnects, reconnects, expiry -------------------------------------------------------


def react(state: State, events: list[Event], ts: int) -> list[Event]:
    """Assign interpreters to booths on join; start and end the grace of a live one."""
    out: list[Event] = []
    ch = state["channels"]
    for event in events:
        if event["type"] == "person.joined":
            p = event["person"]
            pid = p["pid"]
            if p["role"] == INTERPRETER and pid not in ch["interpreters"]:
                assigned = _assignment(p)
                if assigned is not None:
                    out.append(assigned)
            elif (
                p["role"] != INTERPRETER
                and pid not in ch["choice"]
                and (first := p["lang"]) is not None
                and first in ch["channels"]
                and first not in ch["sign"]  # a sign channel is seen, not heard
            ):
                out.append(_chosen(pid, first))  # a first visit hears their language
            for lang, channel in ch["channels"].items():
                away = channel["away"]
                if away is not None and away["pid"] == pid:
                    out.append({"type": "booth.back", "lang": lang, "pid": pid})
        elif event["type"] == "person.left" and not rooms.is_online(state, event["pid"]):
            out.extend(_gone(state, event["pid"], ts))
    return out


def _assignment(p: Person) -> BoothAssigned | None:
    booth = p.get("booth")
    if not isinstance(booth, str) or not LANG.match(booth):
        return None
    pair = [x for x in p.get("pair", []) if LANG.match(x)][:8]
    if booth not in pair:
        pair.append(booth)
    return {"type": "booth.assigned", "pid": p["pid"], "booth": booth, "pair": pair}


def _gone(state: State, pid: str, ts: int) -> list[Event]:
    out: list[Event] = []
    grace = state["channels"]["settings"]["grace_ms"]
    for lang, channel in state["channels"]["channels"].items():
        pending = _pending(channel, ts)
        if pending is not None and pid in (pending["asker"], pending["answerer"]):
            out.append(
                {"type": "handover.cancelled", "lang": lang, "by": pid, "reason": "disconnected"}
            )
        if channel["live"] == pid and channel["away"] is None:
            out.append(
                {"type": "booth.away", "lang": lang, "pid": pid, "since": ts, "until": ts + grace}
            )
    return out


def apply_assigned(state: State, event: BoothAssigned) -> None:
    state["channels"]["interpreters"][event["pid"]] = {
        "pid": event["pid"],
        "booth": event["booth"],
        "pair": list(event["pair"]),
        "input": FLOOR,
        "out": event["booth"],
    }


def apply_away(state: State, event: BoothAway) -> None:
    channel = state["channels"]["channels"][event["lang"]]
    channel["away"] = {"pid": event["pid"], "since": event["since"], "until": event["until"]}
    channel["cough"] = False


def apply_back(state: State, event: BoothBack) -> None:
    state["channels"]["channels"][event["lang"]]["away"] = None


def deadline(state: State) -> int | None:
    times = []
    for channel in state["channels"]["channels"].values():
        if channel["handover"] is not None:
            times.append(channel["handover"]["expires"])
        if channel["away"] is not None:
            times.append(channel["away"]["until"])
    return min(times) if times else None


def tick(state: State, ts: int) -> list[Event]:
    out: list[Event] = []
    for lang, channel in state["channels"]["channels"].items():
        handover = channel["handover"]
        away = channel["away"]
        if away is not None and away["until"] <= ts:
            out.append(_off(lang, away["pid"], "disconnected", ts, None))
        elif handover is not None and handover["expires"] <= ts:
            out.append({"type": "handover.expired", "lang": lang})
    return out


# --- the console: input, output, cough, signals --------------------------------------------


def check_input(args: dict[str, Any]) -> dict[str, Any]:
    return {"input": arg_str(args, "input", max_len=20)}


def decide_input(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    me, booth = _booth_of(state, actor, None)
    source = args["input"]
    if source != FLOOR:
        _channel(state, source)
        _not_sign(state, source)
        if source == booth:
            raise Refused("you cannot relay your own channel", code="relay_loop")
        _refuse_loop(state, booth, source)
    if me["input"] == source:
        return []
    return [{"type": "input.selected", "pid": actor.pid, "lang": booth, "input": source}]


def decide_output(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    me, booth = _booth_of(state, actor, None)
    out = args["lang"]
    if out not in me["pair"]:
        raise Refused(
            f"{out!r} is not one of your languages ({', '.join(me['pair'])})", code="not_in_pair"
        )
    if me["out"] == out:
        return []
    return [{"type": "output.selected", "pid": actor.pid, "lang": booth, "out": out}]


def check_cough(args: dict[str, Any]) -> dict[str, Any]:
    on = args.get("on")
    if not isinstance(on, bool):
        raise BadArgs("'on' must be true or false")
    return {"on": on}


def decide_cough(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    _, booth = _booth_of(state, actor, None)
    channel = _channel(state, booth)
    if channel["live"] != actor.pid:
        raise Refused("you are not on air", code="not_on_air")
    if channel["cough"] == args["on"]:
        return []  # a held key repeats: the same state twice is no change
    return [{"type": "cough", "lang": booth, "pid": actor.pid, "on": args["on"]}]


def check_signal(args: dict[str, Any]) -> dict[str, Any]:
    preset = arg_str(args, "preset", max_len=20)
    if preset not in PRESETS:
        raise BadArgs(f"'preset' is one of {', '.join(PRESETS)}")
    return {"preset": preset}


def decide_signal(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    _, booth = _booth_of(state, actor, None)
    preset = args["preset"]
    for s in state["channels"]["signals"]:
        if s["lang"] == booth and s["preset"] == preset and ts - s["ts"] < SIGNAL_REPEAT_MS:
            raise Refused("your booth just sent that", code="signal_repeated")
    to = [
        "role:" + MODERATOR,
        "booth:" + booth,
        *("pid:" + pid for pid in rooms.speakers(state)),
    ]
    signals = state["channels"]["signals"]
    return [
        {
            "type": "booth.signal",
            # The room's number: a copy that sees only some signals numbers them alike.
            "n": signals[-1]["n"] + 1 if signals else 1,
            "lang": booth,
            "pid": actor.pid,
            "preset": preset,
            "ts": ts,
            "to": to,
        }
    ]


def apply_input(state: State, event: InputSelected) -> None:
    state["channels"]["interpreters"][event["pid"]]["input"] = event["input"]


def apply_output(state: State, event: OutputSelected) -> None:
    state["channels"]["interpreters"][event["pid"]]["out"] = event["out"]


def apply_cough(state: State, event: Cough) -> None:
    state["channels"]["channels"][event["lang"]]["cough"] = event["on"]


def apply_signal(state: State, event: BoothSignal) -> None:
    """The room keeps the last SIGNAL_KEEP signals; a person's copy, those of them sent to it."""
    signals = state["channels"]["signals"]
    n = event["n"]
    signals.append(
        {
            "n": n,
            "lang": event["lang"],
            "pid": event["pid"],
            "preset": event["preset"],
            "ts": event["ts"],
            "to": list(event["to"]),
        }
    )
    signals[:] = [s for s in signals if s["n"] > n - SIGNAL_KEEP]


# --- chats and captions --------------------------------------------------------------------


def check_chat(args: dict[str, Any]) -> dict[str, Any]:
    chat = arg_str(args, "chat", max_len=20)
    text = arg_str(args, "text", max_len=CHAT_MAX)
    assert chat is not None and text is not None
    if chat not in ("booth", "all") and not LANG.match(chat):
        raise BadArgs("'chat' is 'booth', 'all' or a booth's language")
    if not text.strip():
        raise BadArgs("'text' must not be empty")
    return {"chat": chat, "text": text.strip()}


def decide_chat(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    chat = args["chat"]
    if chat == "all":
        to = ["role:" + INTERPRETER, "role:" + MODERATOR]
    else:
        if actor.role == MODERATOR:
            if chat == "booth":
                raise BadArgs("moderators name the booth: 'chat': 'es'")
        else:
            _, booth = _booth_of(state, actor, None if chat == "booth" else chat)
            chat = booth
        _channel(state, chat)
        # The booth's interpreters, not everyone whose invite names the booth (a captioner).
        to = ["interpreters:" + chat, "role:" + MODERATOR]
    return [
        {
            "type": "chat.posted",
            "chat": chat,
            "pid": actor.pid,
            "text": args["text"],
            "ts": ts,
            "to": to,
        }
    ]


def check_caption(args: dict[str, Any]) -> dict[str, Any]:
    lang = arg_str(args, "lang", max_len=20)
    text = args.get("text")
    if not isinstance(text, str):
        raise BadArgs("'text' must be a string")
    size = len(text.encode("utf-8"))
    if size > CAPTION_BYTES:
        raise BadArgs(
            f"a caption line is at most {CAPTION_BYTES} bytes, not {size}", code="caption_too_long"
        )
    text = " ".join(text.split())  # one line: no newlines into the transcript
    if not text:
        raise BadArgs("'text' must not be empty")
    return {"lang": lang, "text": text}


def decide_caption(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    lang = args["lang"]
    ch = state["channels"]
    if lang != ORIGINAL:
        _channel(state, lang)
    if actor.role == INTERPRETER:
        _, booth = _booth_of(state, actor, lang)
        if ch["channels"][booth]["live"] != actor.pid:
            raise Refused("only the interpreter on air captions a channel", code="not_on_air")
    else:  # a captioner: any channel, or the one their invite names
        me = rooms.find(state, actor.pid)
        own = me.get("booth") if me is not None else None
        mine = {ORIGINAL} if own in (ORIGINAL, ch["floor"]) else {own}
        if own and lang not in mine:
            raise Refused(f"your invite is for captions in {own!r}", code="not_your_booth")
    recent = sum(
        1
        for lines in ch["captions"].values()
        for line in lines
        if line["pid"] == actor.pid and ts - line["ts"] < CAPTION_WINDOW_MS
    )
    if recent >= CAPTION_RATE:
        raise Refused(f"at most {CAPTION_RATE} caption lines a second", code="caption_too_fast")
    return [{"type": "caption", "lang": lang, "pid": actor.pid, "text": args["text"], "ts": ts}]


def _append(lines: list[Line], event: ChatPosted | CaptionPosted, keep: int) -> None:
    n = lines[-1]["n"] + 1 if lines else 1
    lines.append({"n": n, "pid": event["pid"], "text": event["text"], "ts": event["ts"]})
    del lines[:-keep]


def apply_chat(state: State, event: ChatPosted) -> None:
    _append(state["channels"]["chats"].setdefault(event["chat"], []), event, CHAT_KEEP)


def apply_caption(state: State, event: CaptionPosted) -> None:
    _append(state["channels"]["captions"].setdefault(event["lang"], []), event, CAPTION_KEEP)


# --- the slice -----------------------------------------------------------------------------


def view(state: State, person: Viewer | None) -> ChannelsState:
    """Everyone sees the channels, booths and captions; choices, chats and signals only
    those they concern (a listener: their own choice)."""
    ch = state["channels"]
    if person is None:
        return copy.deepcopy(ch)
    out: ChannelsState = {
        "floor": ch["floor"],
        "fallback": ch["fallback"],
        "settings": copy.deepcopy(ch["settings"]),
        "channels": copy.deepcopy(ch["channels"]),
        "interpreters": copy.deepcopy(ch["interpreters"]),
        "choice": {},
        "captions": copy.deepcopy(ch["captions"]),
        "chats": {},
        "signals": [],
        "sign": list(ch["sign"]),
    }
    role, pid = person["role"], person["pid"]
    keys = {"pid:" + pid, "role:" + role}
    if person.get("booth"):
        keys.add("booth:" + person["booth"])
    if role in (MODERATOR, INTERPRETER):
        out["choice"] = dict(ch["choice"])
    else:
        out["choice"] = {pid: ch["choice"][pid]} if pid in ch["choice"] else {}
    if role == MODERATOR:
        out["chats"] = copy.deepcopy(ch["chats"])
    elif role == INTERPRETER:
        out["chats"] = {
            k: copy.deepcopy(v)
            for k, v in ch["chats"].items()
            if k == "all" or k == person.get("booth")
        }
    else:
        out["chats"] = {}
    out["signals"] = [copy.deepcopy(s) for s in ch["signals"] if not keys.isdisjoint(s["to"])]
    return out


SLICE = Slice(
    name="channels",
    init=init,
    commands=by_name(
        Command("channel.choose", EVERYONE, check_lang, decide_choose),
        Command("channel.add", STAFF, check_lang, decide_add),
        Command("air.take", BOOTH_ROLES, check_opt_lang, decide_take),
        Command("air.release", BOOTH_ROLES, check_opt_lang, decide_release),
        Command("booth.clear", STAFF, check_lang, decide_clear),
        Command("handover.request", BOOTH_ROLES, check_opt_lang, decide_request),
        Command("handover.offer", BOOTH_ROLES, check_offer, decide_offer),
        Command("handover.accept", BOOTH_ROLES, check_opt_lang, decide_accept),
        Command("handover.decline", BOOTH_ROLES, check_opt_lang, decide_decline),
        Command("handover.cancel", BOOTH_ROLES, check_opt_lang, decide_cancel),
        Command("booth.input", BOOTH_ROLES, check_input, decide_input),
        Command("booth.output", BOOTH_ROLES, check_lang, decide_output),
        Command("booth.cough", BOOTH_ROLES, check_cough, decide_cough),
        Command("booth.signal", BOOTH_ROLES, check_signal, decide_signal),
        Command("chat.post", frozenset({INTERPRETER, MODERATOR}), check_chat, decide_chat),
        Command("caption.post", frozenset({INTERPRETER, CAPTIONER}), check_caption, decide_caption),
    ),
    apply={
        "channel.chosen": apply_chosen,
        "channel.added": apply_added,
        "booth.assigned": apply_assigned,
        "air.taken": apply_taken,
        "air.released": apply_released,
        "air.handed": apply_handed,
        "handover.requested": apply_asked,
        "handover.offered": apply_asked,
        "handover.declined": apply_handover_over,
        "handover.cancelled": apply_handover_over,
        "handover.expired": apply_handover_over,
        "booth.away": apply_away,
        "booth.back": apply_back,
        "input.selected": apply_input,
        "output.selected": apply_output,
        "cough": apply_cough,
        "booth.signal": apply_signal,
        "chat.posted": apply_chat,
        "caption": apply_caption,
    },
    view=view,
    react=react,
    deadline=deadline,
    tick=tick,
)

__all__ = [
    "SLICE",
    "ORIGINAL",
    "FLOOR",
    "langs",
    "signs",
    "live",
    "coughing",
    "fallback",
    "choice_of",
    "choices",
    "interpreter",
    "interpreters",
]
