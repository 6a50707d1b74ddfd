"""Who is heard where: the audio routing rules and the ``audio`` slice. Pure.

The media layer (server/media/) never decides anything itself: after each fold it asks
:func:`routes` which microphones feed which *source* — ``floor`` or a channel's language —
and :meth:`Routes.hearing` what each person's listening track carries. Everything here reads the
room state only, so every node routes the same way at the same point of the log.

Rules:

- The floor carries the speakers the chair gave the floor to and the moderators, minus
  anyone a moderator muted (``audio.mute``).
- A channel carries its one live interpreter (channels slice, ``channels[lang].live``),
  nothing while they hold the cough key, and while nobody is on air the floor
  (``fallback = "original"``) or silence (``"silence"``).
- A participant hears their chosen channel (``channels.choice[pid]``, ``"original"`` or a
  missing pid: the floor) and may have the floor underneath an interpretation; an
  interpreter hears their input (the floor or a relay channel), never their own channel.
- Nobody hears their own microphone (media.py drops a listener's own packets).
- The floor forwards up to :data:`FLOOR_MICS` of its microphones at once, the ones speaking
  (server/media/relay.py ``FloorLanes``); a listener asks for that many tracks per source.

What it reads of the other slices, through their queries: ``rooms.speakers``,
``rooms.moderators``, ``rooms.find``; ``channels.live``, ``channels.coughing``,
``channels.choices``, ``channels.interpreters``, ``channels.fallback``.

The ``audio`` slice (``state["audio"]``)::

    muted      [pid…]        speakers a moderator muted: their packets are dropped
    recording  None | {id, node, by, since}   the node that writes the files, and since when
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import channels, rooms
from .errors import Refused
from .events import AudioMuted, AudioUnmuted, RecordingStarted, RecordingStopped
from .state import AudioState
from .types import (
    INTERPRETER,
    MODERATOR,
    STAFF,
    SYSTEM,
    Actor,
    Command,
    Event,
    RoomConfig,
    Slice,
    State,
    arg_str,
    by_name,
    no_args,
)

FLOOR = "floor"
ORIGINAL = "original"
SILENCE = "silence"
FLOOR_MICS = 3
"""Microphones the floor forwards at once (its *lanes*): the chair can interject and two
panelists can overlap, each voice on its own listening track, mixed by the browser (the
server never decodes to mix). Which of the microphones allowed on the floor (:attr:`Routes.floor`)
fill the lanes is chosen per packet by level, in the media layer (server/media/relay.py)."""


@dataclass(frozen=True)
class Routes:
    """Which microphone feeds which source, at one point of the log."""

    floor: frozenset[str] = frozenset()
    """pids whose microphone feeds the floor now."""
    live: Mapping[str, str | None] = field(default_factory=dict)
    """channel → the pid on air (``None``: nobody), whether or not they cough."""
    cough: frozenset[str] = frozenset()
    """channels whose live interpreter holds the cough key."""
    fallback: str = ORIGINAL
    choice: Mapping[str, str] = field(default_factory=dict)
    """pid → the source a participant chose (``floor`` or a channel)."""
    inputs: Mapping[str, str] = field(default_factory=dict)
    """interpreter pid → what they listen to: ``floor`` or a relay channel."""
    booths: Mapping[str, str] = field(default_factory=dict)
    """interpreter pid → their booth's channel."""

    def feeds(self, pid: str, source: str) -> bool:
        """Whether a packet from ``pid`` published into ``source`` is heard now."""
        if source == FLOOR:
            return pid in self.floor
        return self.live.get(source) == pid and source not in self.cough

    def carries(self, channel: str) -> str | None:
        """The source a listener of ``channel`` gets: the channel, the floor or nothing."""
        if channel == FLOOR:
            return FLOOR
        if self.live.get(channel) is not None:
            return channel
        if channel in self.live and self.fallback == SILENCE:
            return None
        return FLOOR

    def hearing(self, pid: str, role: str) -> tuple[str | None, str | None]:
        """``(main, under)``: what ``pid``'s two listening tracks carry.

        ``under`` is the floor beneath an interpretation (the browser sets its level); for an
        interpreter off air, their booth's channel while a partner is live in it; else ``None``.
        """
        if role == INTERPRETER and pid in self.booths:
            booth = self.booths[pid]
            wanted = self.inputs.get(pid, FLOOR)
            if wanted == booth:
                wanted = FLOOR  # never one's own channel echoed back
            partner = self.live.get(booth)
            return self.carries(wanted), (booth if partner not in (None, pid) else None)
        main = self.carries(self.choice.get(pid, FLOOR))
        return main, (FLOOR if main not in (FLOOR, None) else None)


def routes(state: State) -> Routes:
    """The routing for ``state`` (call once per fold, not per packet)."""
    muted = set(state["audio"]["muted"])
    floor = (set(rooms.speakers(state)) | set(rooms.moderators(state))) - muted
    langs = channels.langs(state)
    interpreters = channels.interpreters(state)
    return Routes(
        floor=frozenset(floor),
        live={lang: channels.live(state, lang) for lang in langs},
        cough=frozenset(lang for lang in langs if channels.coughing(state, lang)),
        fallback=channels.fallback(state),
        choice={pid: (FLOOR if c == ORIGINAL else c) for pid, c in channels.choices(state).items()},
        inputs={pid: i["input"] for pid, i in interpreters.items()},
        booths={pid: i["booth"] for pid, i in interpreters.items()},
    )


def sources(state: State) -> list[str]:
    """Every source of the room: the floor, then each channel (a moderator may add one)."""
    return [FLOOR, *channels.langs(state)]


def is_muted(state: State, pid: str) -> bool:
    """Whether a moderator muted ``pid``'s microphone."""
    return pid in state["audio"]["muted"]


def may_publish(state: State, person: Mapping[str, Any], target: str) -> bool:
    """Whether ``person`` may connect a microphone to ``target`` now; raise ``Refused`` if not.

    Returns whether the microphone is heard at once. An interpreter assigned to the booth
    may connect while off air (stand-by, so a handover switches without renegotiating);
    their packets are dropped until they are live.
    """
    pid, role = person["pid"], person["role"]
    if target == FLOOR:
        if role == INTERPRETER:
            raise Refused("interpreters speak into their channel, not the floor", code="forbidden")
        if role != MODERATOR and not rooms.has_floor(state, pid):
            raise Refused("the chair has not given you the floor", code="not_granted")
        return not is_muted(state, pid)
    if target not in sources(state):
        raise Refused(f"this room has no {target!r} channel", code="no_such_channel")
    if role != INTERPRETER:
        raise Refused("only the channel's interpreters speak into it", code="forbidden")
    r = routes(state)
    booth = r.booths.get(pid)
    if booth is None:
        raise Refused("you are not assigned to a booth in this room", code="not_in_booth")
    if booth != target:
        raise Refused(
            f"you are assigned to the {booth!r} booth, not {target!r}", code="not_your_booth"
        )
    return r.feeds(pid, target)


# --- the audio slice: moderator mute, recording ---------------------------------------------


def init(config: RoomConfig) -> AudioState:
    return {"muted": [], "recording": None}


def check_pid(args: dict[str, Any]) -> dict[str, Any]:
    return {"pid": arg_str(args, "pid", max_len=64)}


def decide_mute(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    pid = args["pid"]
    rooms.person(state, pid)
    if pid in state["audio"]["muted"]:
        raise Refused("that microphone is already muted", code="already_muted")
    return [{"type": "audio.muted", "pid": pid, "by": actor.pid}]


def decide_unmute(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    if args["pid"] not in state["audio"]["muted"]:
        raise Refused("that microphone is not muted", code="not_muted")
    return [{"type": "audio.unmuted", "pid": args["pid"], "by": actor.pid}]


def apply_muted(state: State, event: AudioMuted) -> None:
    if event["pid"] not in state["audio"]["muted"]:
        state["audio"]["muted"].append(event["pid"])


def apply_unmuted(state: State, event: AudioUnmuted) -> None:
    if event["pid"] in state["audio"]["muted"]:
        state["audio"]["muted"].remove(event["pid"])


def recording_node(actor: Actor) -> str:
    """The node that writes a recording a moderator starts: the node of their connection.

    A connection id is ``<node>~<token>`` (the node names it, server/node/sessions.py), so
    every node reads the same answer from the log entry, with no argument a client could
    set and no clock.
    """
    node, sep, _ = (actor.conn or "").partition("~")
    if not (node and sep):
        raise Refused("a recording is started from a connection to a node", code="no_node")
    return node


def recording_id(ts: int) -> str:
    """``20261129T165004Z-123``: the log time of the start, to the millisecond (UTC)."""
    at = datetime.fromtimestamp(ts // 1000, UTC)
    return f"{at:%Y%m%dT%H%M%SZ}-{ts % 1000:03d}"


def decide_record(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    if state["audio"]["recording"] is not None:
        raise Refused("the room is already being recorded", code="already_recording")
    return [
        {
            "type": "recording.started",
            "id": recording_id(ts),
            "node": recording_node(actor),
            "by": actor.pid,
            "since": ts,
        }
    ]


def decide_stop(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    rec = state["audio"]["recording"]
    if rec is None:
        raise Refused("the room is not being recorded", code="not_recording")
    return [{"type": "recording.stopped", "id": rec["id"], "by": actor.pid, "ts": ts}]


def apply_started(state: State, event: RecordingStarted) -> None:
    state["audio"]["recording"] = {
        "id": event["id"],
        "node": event["node"],
        "by": event["by"],
        "since": event["since"],
    }


def apply_stopped(state: State, event: RecordingStopped) -> None:
    state["audio"]["recording"] = None


def react(state: State, events: list[Event], ts: int) -> list[Event]:
    """A speaker whose floor ends is unmuted, so the next grant starts with an open mic."""
    out: list[Event] = []
    for e in events:
        if e["type"] == "floor.revoked" and e["pid"] in state["audio"]["muted"]:
            out.append({"type": "audio.unmuted", "pid": e["pid"], "by": None})
    return out


SLICE = Slice(
    name="audio",
    init=init,
    commands=by_name(
        Command("audio.mute", STAFF, check_pid, decide_mute),
        Command("audio.unmute", STAFF, check_pid, decide_unmute),
        # The fold re-checks the moderator; a node stops an orphan or on shutdown (SYSTEM).
        Command("recording.start", STAFF, no_args, decide_record),
        Command("recording.stop", STAFF | {SYSTEM}, no_args, decide_stop),
    ),
    apply={
        "audio.muted": apply_muted,
        "audio.unmuted": apply_unmuted,
        "recording.started": apply_started,
        "recording.stopped": apply_stopped,
    },
    react=react,
)
