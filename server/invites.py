"""The room's invites: who minted which, revoked ones, and the members' representatives. Pure.

Every invite for the room is recorded once, as a logged command (``invite.record``, given by
a node: when a moderator mints one over HTTP, or when a CLI-minted invite is first used),
and listed for the chair. The chair revokes one by its id (``invite.revoke``); every node
then closes that invite's connections and refuses it at connect (``is_revoked``).

An invite that names a member organisation must name one of its representatives: those
in the config (``[[members]] representatives``) and those the chair added
(``member.represent``). A member with no representative at all (none configured, none
added) admits any name: the assembly has not said who speaks for it (docs/security.md).

State (``state["invites"]``)::

    invites  {jti: {jti, role, name, org, country, booth, lang, exp, by, at, revoked}}
    reps     {member: [name…]}   configured first, then those the chair added
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import BadArgs, Refused
from .events import InviteMinted, InviteRevoked, RepresentativeAdded
from .state import InviteRecord, InvitesState
from .types import (
    MODERATOR,
    ROLES,
    STAFF,
    SYSTEM,
    Actor,
    Command,
    Event,
    RoomConfig,
    Slice,
    State,
    Viewer,
    arg_int,
    arg_str,
    by_name,
)

CHAIR = ["role:" + MODERATOR]
MAX_INVITES = 20_000
"""Invite records a room holds; past it, ``invite.record`` is refused (``too_many_invites``)
and the invite is not admitted (a room's log keeps what it recorded: none is forgotten)."""


def init(config: RoomConfig) -> InvitesState:
    return {
        "invites": {},
        "reps": {m.id: list(m.representatives) for m in config.members},
    }


# --- queries --------------------------------------------------------------------------------


def _same(name: str) -> str:
    return " ".join(name.split()).casefold()


def is_revoked(state: State, jti: str | None) -> bool:
    """Whether the invite ``jti`` was revoked in this room."""
    slot = state.get("invites")
    if jti is None or slot is None:
        return False
    record = slot["invites"].get(jti)
    return bool(record and record["revoked"])


def is_recorded(state: State, jti: str) -> bool:
    slot = state.get("invites")
    return slot is not None and jti in slot["invites"]


def representatives(state: State, member: str) -> list[str] | None:
    """The names that may represent ``member`` (``None``: not a member of the roll)."""
    slot = state.get("invites")
    if slot is None:
        return None
    return slot["reps"].get(member)


def check_representative(reps: list[str] | None, org: str | None, name: str) -> None:
    """Refuse an invite naming ``org`` for someone not on its list of representatives.

    ``reps`` is the member's list (``None``: ``org`` is not a member; an empty list: the
    member has said nobody yet, and any name is admitted)."""
    if org is None or not reps:
        return
    if _same(name) not in {_same(r) for r in reps}:
        raise Refused(
            f"{name!r} is not a representative of {org!r} (ask the chair to add them)",
            code="not_representative",
        )


# --- commands ---------------------------------------------------------------------------


def check_record(args: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "jti": arg_str(args, "jti", max_len=64),
        "role": arg_str(args, "role", max_len=20),
        "name": arg_str(args, "name", max_len=120),
        "by": arg_str(args, "by", max_len=64, required=False),
        "exp": arg_int(args, "exp", lo=0, hi=2**53),
    }
    if out["role"] not in ROLES:
        raise BadArgs(f"unknown role {out['role']!r}")
    for key in ("org", "country", "booth", "lang"):
        out[key] = arg_str(args, key, max_len=120, required=False)
    return out


def decide_record(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    slot = state["invites"]
    if args["jti"] in slot["invites"]:
        return []  # recorded already (a second connection with a CLI invite)
    if len(slot["invites"]) >= MAX_INVITES:
        raise Refused("this room holds too many invites", code="too_many_invites")
    record: InviteRecord = {
        "jti": args["jti"],
        "role": args["role"],
        "name": args["name"],
        "org": args["org"],
        "country": args["country"],
        "booth": args["booth"],
        "lang": args["lang"],
        "exp": args["exp"],
        "by": args["by"],
        "at": ts,
        "revoked": False,
    }
    return [{"type": "invite.minted", "invite": record, "to": list(CHAIR)}]


def check_revoke(args: dict[str, Any]) -> dict[str, Any]:
    return {"jti": arg_str(args, "jti", max_len=64)}


def decide_revoke(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    record = state["invites"]["invites"].get(args["jti"])
    if record is None:
        raise Refused("this room has no such invite", code="unknown_invite")
    if record["revoked"]:
        raise Refused("that invite is already revoked", code="already_revoked")
    return [
        {"type": "invite.revoked", "jti": args["jti"], "by": actor.pid, "ts": ts, "to": list(CHAIR)}
    ]


def check_represent(args: dict[str, Any]) -> dict[str, Any]:
    name = arg_str(args, "name", max_len=120)
    assert name is not None
    if not name.strip():
        raise BadArgs("'name' must not be empty")
    return {"member": arg_str(args, "member", max_len=120), "name": " ".join(name.split())}


def decide_represent(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    reps = state["invites"]["reps"].get(args["member"])
    if reps is None:
        raise Refused(f"{args['member']!r} is not on the voter roll", code="not_on_roll")
    if _same(args["name"]) in {_same(r) for r in reps}:
        raise Refused("already a representative of that member", code="already_representative")
    return [
        {
            "type": "representative.added",
            "member": args["member"],
            "name": args["name"],
            "by": actor.pid,
        }
    ]


def apply_minted(state: State, event: InviteMinted) -> None:
    state["invites"]["invites"][event["invite"]["jti"]] = copy.deepcopy(event["invite"])


def apply_revoked(state: State, event: InviteRevoked) -> None:
    record = state["invites"]["invites"].get(event["jti"])
    if record is not None:
        record["revoked"] = True


def apply_represent(state: State, event: RepresentativeAdded) -> None:
    state["invites"]["reps"].setdefault(event["member"], []).append(event["name"])


def view(state: State, person: Viewer | None) -> InvitesState:
    """The chair sees the invites; everyone sees who represents whom."""
    return {"reps": copy.deepcopy(state["invites"]["reps"]), **personal(state, person)}  # type: ignore[typeddict-item]


def personal(state: State, person: Viewer | None) -> dict[str, Any]:
    """:func:`view` without ``reps`` (the same for everyone)."""
    chair = person is None or person["role"] == MODERATOR
    return {"invites": copy.deepcopy(state["invites"]["invites"]) if chair else {}}


SLICE = Slice(
    name="invites",
    init=init,
    commands=by_name(
        Command("invite.record", frozenset({SYSTEM}), check_record, decide_record),
        Command("invite.revoke", STAFF, check_revoke, decide_revoke),
        Command("member.represent", STAFF, check_represent, decide_represent),
    ),
    apply={
        "invite.minted": apply_minted,
        "invite.revoked": apply_revoked,
        "representative.added": apply_represent,
    },
    view=view,
    shared=("reps",),
    personal=personal,
)
