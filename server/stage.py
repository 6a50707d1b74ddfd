"""The stage: who is seen, how the room's pages lay them out, the screen share. Pure.

Rules:

- On stage are the moderators who are online (the chair), the people the chair put on stage
  (``stage.add``: a panel), and whoever has the floor (``rooms.speakers``), in that order.
  Interpreters, captioners and observers are never on stage (sign interpreters are seen in
  their sign channel instead).
- One screen share at a time: the chair or someone on stage starts it; its publisher or the
  chair stops it; it stops by itself when its publisher leaves the room or the stage.
- The chair picks the layout everyone sees (``speaker``: the speaker large, a strip of the
  others; ``grid``: a panel; ``screen``: the shared screen with the speaker beside it) and
  may pin someone on stage or the screen for everyone. A pin that no longer points at the
  stage (they left it, the share stopped) is dropped by the room (``stage.pinned`` with
  ``by: null``), so a pin in the state always shows something.
- Who may publish video (:func:`video_publishers`) follows from that: a camera for everyone
  on stage, the screen for the one sharing, and ``sign:<lang>`` for the interpreter on air
  in a sign-language channel (channels.py's booths: one signer at a time, handover, grace).

The *active speaker* is not in this state: each node derives it from the levels of the
floor microphones it forwards (``server/media/speaker.py``), because it changes every few
seconds, needs no agreement between nodes (each node shows the voice it forwards) and must
not cost a log entry per change (docs/architecture.md, "The stage").

State (``state["stage"]``, :class:`state.StageState`)::

    layout  "speaker" | "grid" | "screen"
    panel   [pid…]            put on stage by the chair, in order
    pin     None | pid | "screen"
    share   None | {pid, since}
"""

from __future__ import annotations

from typing import Any, Literal, cast

from . import channels, rooms
from .errors import BadArgs, Refused
from .events import ShareStarted, ShareStopped, StageAdded, StageLayout, StagePinned, StageRemoved
from .state import StageState
from .types import (
    CAPTIONER,
    INTERPRETER,
    MODERATOR,
    OBSERVER,
    PANELIST,
    PARTICIPANT,
    STAFF,
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

LAYOUTS = ("speaker", "grid", "screen")
SCREEN = "screen"
CAMERA = "camera"
MAX_PANEL = 12
"""People the chair may put on stage at once (a grid of 4×3 still shows faces)."""
OFF_STAGE_ROLES = frozenset({INTERPRETER, CAPTIONER, OBSERVER})
SHARERS = frozenset({MODERATOR, PANELIST, PARTICIPANT})
"""Roles that may share a screen — when they are on stage (or the chair)."""


def init(config: RoomConfig) -> StageState:
    layout = config.extra.get("stage_layout", "speaker")
    return {
        "layout": layout if layout in LAYOUTS else "speaker",
        "panel": [],
        "pin": None,
        "share": None,
    }


# --- queries ---------------------------------------------------------------------------------


def on_stage(state: State) -> list[str]:
    """Everyone on stage, in order: online moderators, the panel, the floor (no repeats)."""
    chair = [pid for pid in rooms.moderators(state) if rooms.is_online(state, pid)]
    seen: dict[str, None] = {}
    for pid in (*chair, *state["stage"]["panel"], *rooms.speakers(state)):
        seen.setdefault(pid, None)
    return list(seen)


def sharing(state: State) -> str | None:
    """Who shares their screen now, if anyone."""
    share = state["stage"]["share"]
    return None if share is None else share["pid"]


def video_publishers(state: State) -> dict[str, frozenset[str]]:
    """pid → the video sources they may publish now.

    ``camera`` for everyone on stage, ``screen`` for the one sharing, ``sign:<lang>`` for
    the interpreter on air in a sign-language channel. The media layer reads this after
    every fold, like ``audio.routes``; anyone missing may publish nothing.
    """
    out: dict[str, set[str]] = {pid: {CAMERA} for pid in on_stage(state)}
    sharer = sharing(state)
    if sharer is not None:
        out.setdefault(sharer, set()).add(SCREEN)
    for lang in channels.signs(state):
        live = channels.live(state, lang)
        if live is not None:
            out.setdefault(live, set()).add("sign:" + lang)
    return {pid: frozenset(sources) for pid, sources in out.items()}


def _may_share(state: State, pid: str) -> bool:
    """Online (a command racing its sender's leave shares nothing) and the chair or on stage."""
    p = rooms.find(state, pid)
    if p is None or not p["conns"]:
        return False
    return p["role"] == MODERATOR or pid in on_stage(state)


# --- commands --------------------------------------------------------------------------------


def check_pid(args: dict[str, Any]) -> dict[str, Any]:
    return {"pid": arg_str(args, "pid", max_len=64)}


def check_layout(args: dict[str, Any]) -> dict[str, Any]:
    layout = arg_str(args, "layout", max_len=20)
    if layout not in LAYOUTS:
        raise BadArgs(f"'layout' is one of {', '.join(LAYOUTS)}")
    return {"layout": layout}


def check_pin(args: dict[str, Any]) -> dict[str, Any]:
    """``target``: a pid, ``"screen"``, or ``null`` to unpin."""
    return {"target": arg_str(args, "target", max_len=64, required=False)}


def decide_add(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    pid = args["pid"]
    person = rooms.person(state, pid)
    if person["role"] in OFF_STAGE_ROLES:
        raise Refused(f"a {person['role']} is not seen on stage", code="not_for_stage")
    if pid in state["stage"]["panel"]:
        raise Refused(f"{pid} is on stage already", code="already_on_stage")
    if len(state["stage"]["panel"]) >= MAX_PANEL:
        raise Refused(f"at most {MAX_PANEL} people on stage", code="stage_full")
    added: StageAdded = {"type": "stage.added", "pid": pid, "by": actor.pid}
    return [added]


def decide_remove(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    pid = args["pid"]
    if pid not in state["stage"]["panel"]:
        raise Refused(f"{pid} was not put on stage", code="not_on_stage")
    removed: StageRemoved = {"type": "stage.removed", "pid": pid, "by": actor.pid}
    return [removed]


def decide_layout(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    if state["stage"]["layout"] == args["layout"]:
        return []
    layout = cast(Literal["speaker", "grid", "screen"], args["layout"])
    event: StageLayout = {"type": "stage.layout", "layout": layout, "by": actor.pid}
    return [event]


def decide_pin(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    target = args["target"]
    if target == SCREEN:
        if state["stage"]["share"] is None:
            raise Refused("nobody shares a screen", code="no_share")
    elif target is not None and target not in on_stage(state):
        raise Refused(f"{target} is not on stage", code="not_on_stage")
    if state["stage"]["pin"] == target:
        return []
    return [_pinned(target, actor.pid)]


def _pinned(target: str | None, by: str | None) -> StagePinned:
    return {"type": "stage.pinned", "target": target, "by": by}


def decide_share(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    if not _may_share(state, actor.pid):
        raise Refused("only the chair and those on stage share a screen", code="not_on_stage")
    sharer = sharing(state)
    if sharer == actor.pid:
        raise Refused("you share your screen already", code="already_sharing")
    if sharer is not None:
        raise Refused(f"{sharer} shares a screen: one at a time", code="share_taken")
    started: ShareStarted = {"type": "share.started", "pid": actor.pid, "ts": ts}
    return [started]


def decide_unshare(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    sharer = sharing(state)
    if sharer is None:
        raise Refused("nobody shares a screen", code="no_share")
    if sharer != actor.pid and actor.role != MODERATOR:
        raise Refused("only its publisher or the chair stops a share", code="not_your_share")
    return [_stopped(sharer, actor.pid, "stopped")]


def _stopped(
    pid: str, by: str | None, reason: Literal["stopped", "left", "off_stage"]
) -> ShareStopped:
    return {"type": "share.stopped", "pid": pid, "by": by, "reason": reason}


# --- appliers --------------------------------------------------------------------------------


def apply_added(state: State, event: StageAdded) -> None:
    state["stage"]["panel"].append(event["pid"])


def apply_removed(state: State, event: StageRemoved) -> None:
    panel = state["stage"]["panel"]
    if event["pid"] in panel:
        panel.remove(event["pid"])


def apply_layout(state: State, event: StageLayout) -> None:
    state["stage"]["layout"] = event["layout"]


def apply_pinned(state: State, event: StagePinned) -> None:
    state["stage"]["pin"] = event["target"]


def apply_share_started(state: State, event: ShareStarted) -> None:
    state["stage"]["share"] = {"pid": event["pid"], "since": event["ts"]}


def apply_share_stopped(state: State, event: ShareStopped) -> None:
    state["stage"]["share"] = None


# --- keeping the share and the pin on stage ----------------------------------------------------

_MOVES = frozenset({"person.left", "floor.revoked", "stage.removed", "share.stopped"})
"""Events after which a share or a pin may point off the stage."""


def react(state: State, events: list[Event], ts: int) -> list[Event]:
    """Stop a share whose publisher left the room or the stage; drop a pin that no longer
    shows anything. Runs after the other slices' events are applied, so it reads the state
    they leave."""
    if not any(e["type"] in _MOVES for e in events):
        return []
    out: list[Event] = []
    sharer = sharing(state)
    if sharer is not None:
        if not rooms.is_online(state, sharer):
            out.append(_stopped(sharer, None, "left"))
            sharer = None
        elif not _may_share(state, sharer):
            out.append(_stopped(sharer, None, "off_stage"))
            sharer = None
    pin = state["stage"]["pin"]
    if pin is not None and (sharer is None if pin == SCREEN else pin not in on_stage(state)):
        out.append(_pinned(None, None))
    return out


SLICE = Slice(
    name="stage",
    init=init,
    commands=by_name(
        Command("stage.add", STAFF, check_pid, decide_add),
        Command("stage.remove", STAFF, check_pid, decide_remove),
        Command("stage.layout", STAFF, check_layout, decide_layout),
        Command("stage.pin", STAFF, check_pin, decide_pin),
        Command("share.start", SHARERS, no_args, decide_share),
        Command("share.stop", SHARERS, no_args, decide_unshare),
    ),
    apply={
        "stage.added": apply_added,
        "stage.removed": apply_removed,
        "stage.layout": apply_layout,
        "stage.pinned": apply_pinned,
        "share.started": apply_share_started,
        "share.stopped": apply_share_stopped,
    },
    react=react,
)

__all__ = ["SLICE", "LAYOUTS", "on_stage", "sharing", "video_publishers"]
