"""Polls and formal votes: lifecycle, electorates, proxies, ballots and the tally. Pure.

A poll moves ``draft → open → closed → published`` (:class:`PollState`); only the chair
moves it, and an illegal move is refused with a code naming the state it is in
(``poll_is_draft``, ``poll_is_open``, ``poll_is_closed``, ``poll_is_published``).

Two electorates: ``present`` (a quick poll: each participant present, one ballot each) and
``roll`` (a formal vote: one ballot per member organisation on the roll, weighted, cast by
any of its representatives — the person whose invite carries ``org`` — or by the holder of
its proxy). Proxies are given and revoked while no formal vote is open, and each vote keeps
the proxies as they stood when it opened.

Open ballots are one command, ``ballot.cast``: the log records who chose what. Secret
ballots are two log entries that nothing links (docs/voting.md): ``ballot.claim`` (who:
a member takes its ballot, with a *blinded* token) and ``ballot.deposit`` (what: one
ballot *sealed* on the voter's device to the poll's key, given by a node, never by a
person). ``pending`` counts claims per weight class. After the close (and ``GRACE_MS`` for
ballots on their way) a node opens every sealed ballot and appends them together as
``ballot.reveal``, which seals the poll.

Modules: this one holds the slice (the chair's commands, proxies, open ballots, the clock,
the appliers and the views); :mod:`polls_core` the rules they share; :mod:`polls_secret`
the secret ballot's keys, claims and deposits.

State (``state["polls"]``)::

    roll     {member: {name, country, w}}      weights in hundredths
    voting   {proxy_chains, max_proxies, key_bits}
    proxies  {from_member: to_member}
    polls    {id: poll}, order [id…], seq
    poll     definition (polldefs) + state, opened_at, closes_at, closed_at, sealed,
             published_at, keys {w: {n, e}}, proxies, voted {voter: {by, at, w, choice?,
             blinded?}}, pending {w: claims}, ballots {tracker: {sealed, late}}, seal,
             counts {option: [n, w]}, cast [n, w], progress, result
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Mapping
from typing import Any, cast

from . import polldefs, rooms, tally
from .errors import BadArgs, Refused
from .events import (
    BallotCast,
    BallotChanged,
    PollClosed,
    PollCreated,
    PollDeleted,
    PollOpened,
    PollProgress,
    PollPublished,
    PollSealed,
    PollTimer,
    PollUpdated,
    ProxyGranted,
    ProxyRevoked,
)
from .polls_core import (
    GRACE_MS,
    PROGRESS_MS,
    PROXY_ROLES,
    TO_CHAIR,
    VOTER_ROLES,
    PollState,
    already_voted,
    check_choice,
    choice_arg,
    closed_by_timer,
    electorate,
    find_poll,
    get_poll,
    holder,
    mark_dirty,
    move,
    must_be_open,
    new_poll,
    poll_arg,
    progress,
    public,
    public_poll,
    public_result,
    seal_events,
    voter_for,
    weight_classes,
)
from .polls_secret import (
    SEALED_PER_CLAIM,
    apply_claimed,
    apply_deposited,
    apply_keys,
    check_ballot,
    check_claim,
    check_deposit,
    check_keys,
    check_reveal,
    check_sealed,
    count_revealed,
    decide_claim,
    decide_deposit,
    decide_keys,
    decide_reveal,
)
from .state import FinalResult, Poll, PollDefinition, PollsState, VoteRecord
from .types import (
    MODERATOR,
    STAFF,
    SYSTEM,
    Actor,
    Apply,
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


def init(config: RoomConfig) -> PollsState:
    polls = {
        p["id"]: new_poll(p, p["id"])
        for p in polldefs.from_config(config.id, config.extra, config.floor)
    }
    return {
        "roll": {
            m.id: {"name": m.name, "country": m.country, "w": round(m.weight * 100)}
            for m in config.members
        },
        "voting": polldefs.voting_settings(config.id, config.extra),
        "proxies": {},
        "polls": polls,
        "order": list(polls),
        "seq": 0,
    }


# --- lookups --------------------------------------------------------------------------------


# --- argument checks ---------------------------------------------------------------------


def check_poll(args: dict[str, Any]) -> dict[str, Any]:
    return {"poll": poll_arg(args)}


def check_create(args: dict[str, Any]) -> dict[str, Any]:
    definition = args.get("def")
    if not isinstance(definition, dict):
        raise BadArgs("'def' must be a poll definition")
    return {"def": definition}


def check_update(args: dict[str, Any]) -> dict[str, Any]:
    return {**check_create(args), "poll": poll_arg(args)}


def check_open(args: dict[str, Any]) -> dict[str, Any]:
    seconds = arg_int(args, "seconds", lo=0, hi=polldefs.MAX_SECONDS, required=False)
    return {"poll": poll_arg(args), "seconds": seconds}


def check_timer(args: dict[str, Any]) -> dict[str, Any]:
    return {
        "poll": poll_arg(args),
        "seconds": arg_int(args, "seconds", lo=0, hi=polldefs.MAX_SECONDS),
    }


def check_cast(args: dict[str, Any]) -> dict[str, Any]:
    return {
        "poll": poll_arg(args),
        "choice": choice_arg(args),
        "for": arg_str(args, "for", max_len=120, required=False),
    }


def check_grant(args: dict[str, Any]) -> dict[str, Any]:
    return {
        "to": arg_str(args, "to", max_len=120),
        "from": arg_str(args, "from", max_len=120, required=False),
    }


def check_revoke(args: dict[str, Any]) -> dict[str, Any]:
    return {"from": arg_str(args, "from", max_len=120, required=False)}


# --- the chair's commands -------------------------------------------------------------------


def lone_weight(state: State, definition: PollDefinition) -> None:
    """Refuse a secret roll vote where one member alone holds a weight: the published
    ballots carry their weight, so that member's would show its choice (docs/voting.md)."""
    if not definition["secret"] or definition["electorate"] != "roll":
        return
    roll = state["polls"]["roll"]
    held = Counter(m["w"] for m in roll.values())
    for member_id, member in roll.items():
        if held[member["w"]] == 1:
            raise Refused(
                f"member {member_id!r} ({member['name']}) is the only one with weight "
                f"{member['w'] / 100:g}: its ballot's weight would show its choice in the "
                f"published result; hold this vote openly, or change the weights",
                code="lone_weight",
            )


def decide_create(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    definition = polldefs.for_command(args["def"], rooms.floor_language(state))
    lone_weight(state, definition)
    seq = state["polls"]["seq"] + 1
    poll_id = f"p{seq}"
    while poll_id in state["polls"]["polls"]:
        seq += 1
        poll_id = f"p{seq}"
    return [
        {
            "type": "poll.created",
            "poll": new_poll(definition, poll_id),
            "seq": seq,
            "by": actor.pid,
            "to": TO_CHAIR,
        }
    ]


def _draft(state: State, poll_id: str, done: str) -> Poll:
    """The poll ``poll_id`` if it is still a draft; else why it cannot be ``done``."""
    poll = get_poll(state, poll_id)
    if poll["state"] != PollState.DRAFT:
        raise Refused(
            f"only a draft can be {done}; the poll is {poll['state']}",
            code=f"poll_is_{poll['state']}",
        )
    return poll


def decide_update(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    poll = _draft(state, args["poll"], "edited")
    definition = polldefs.for_command(args["def"], rooms.floor_language(state))
    lone_weight(state, definition)
    return [
        {
            "type": "poll.updated",
            "poll": new_poll(definition, poll["id"]),
            "by": actor.pid,
            "to": TO_CHAIR,
        }
    ]


def decide_delete(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    poll = _draft(state, args["poll"], "deleted")
    return [{"type": "poll.deleted", "id": poll["id"], "to": TO_CHAIR}]


def decide_open(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    poll = get_poll(state, args["poll"])
    move(poll, PollState.OPEN)
    if poll["electorate"] == "roll" and not state["polls"]["roll"]:
        raise Refused("the assembly has no voter roll", code="no_roll")
    if poll["secret"] and poll["keys"] is None:
        raise Refused(
            "the ballot keys are still being prepared; try again in a moment", code="keys_missing"
        )
    seconds = args["seconds"] if args["seconds"] is not None else poll["seconds"]
    opened = public(poll)
    opened["state"] = PollState.OPEN.value
    opened["opened_at"] = ts
    opened["closes_at"] = ts + seconds * 1000 if seconds else None
    opened["proxies"] = dict(state["polls"]["proxies"]) if poll["electorate"] == "roll" else {}
    return [{"type": "poll.opened", "poll": opened, "by": actor.pid}]


def decide_timer(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    poll = get_poll(state, args["poll"])
    must_be_open(poll, ts)
    seconds = args["seconds"]
    return [
        {
            "type": "poll.timer",
            "id": poll["id"],
            "closes_at": ts + seconds * 1000 if seconds else None,
        }
    ]


def close_events(state: State, poll: Poll, ts: int, by: str) -> list[Event]:
    events: list[Event] = [{"type": "poll.closed", "id": poll["id"], "at": ts, "by": by}]
    # A secret poll is sealed by its reveal (a node opens the sealed ballots after the
    # grace, server/node/ballots.py); an open one at once.
    if not poll["secret"]:
        after: Poll = {**poll, "state": PollState.CLOSED.value, "closed_at": ts}
        events += seal_events(state, after, ts)
    return events


def decide_close(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    poll = get_poll(state, args["poll"])
    move(poll, PollState.CLOSED)
    return close_events(state, poll, ts, actor.pid)


def decide_publish(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    poll = get_poll(state, args["poll"])
    move(poll, PollState.PUBLISHED)
    if not poll["sealed"]:
        raise Refused(
            "the sealed ballots are not revealed yet (ballots sent before the close may "
            "still be on their way); publish in a few seconds",
            code="ballots_pending",
        )
    result = public_result(poll["result"])
    return [{"type": "poll.published", "id": poll["id"], "at": ts, "result": result}]


# --- proxies ----------------------------------------------------------------------------------


def _delegator(state: State, actor: Actor, given: str | None) -> str:
    roll = state["polls"]["roll"]
    member: str | None
    if actor.role == MODERATOR:
        if given is None:
            raise BadArgs("'from' is required when the chair records a proxy")
        member = given
    else:
        person = rooms.find(state, actor.pid)
        member = person["org"] if person is not None else None
        if given is not None and given != member:
            raise Refused("only your own organisation's vote can be delegated", code="forbidden")
    if member not in roll:
        raise Refused(f"{member!r} is not on the voter roll", code="not_on_roll")
    assert member is not None
    return member


def _no_open_vote(state: State) -> None:
    for poll in state["polls"]["polls"].values():
        if poll["electorate"] == "roll" and poll["state"] == PollState.OPEN:
            raise Refused(
                "proxies can change only while no formal vote is open", code="poll_is_open"
            )


def decide_grant(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    polls = state["polls"]
    roll, proxies, voting = polls["roll"], polls["proxies"], polls["voting"]
    member = _delegator(state, actor, args["from"])
    to = args["to"]
    if to not in roll:
        raise Refused(f"{to!r} is not on the voter roll", code="not_on_roll")
    if to == member:
        raise Refused("a member cannot hold its own proxy", code="bad_proxy")
    _no_open_vote(state)
    after = {**proxies, member: to}
    if not voting["proxy_chains"]:
        if to in proxies:
            raise Refused(
                f"{roll[to]['name']} has itself delegated its vote; proxies do not "
                f"chain in this assembly",
                code="proxy_chain",
            )
        if member in proxies.values():
            raise Refused(
                f"{roll[member]['name']} holds proxies and cannot delegate; "
                f"proxies do not chain in this assembly",
                code="proxy_chain",
            )
    elif _reaches(after, to, member):
        raise Refused("this proxy would make a cycle", code="proxy_cycle")
    most = voting["max_proxies"]
    end = holder(after, to)
    if most is not None and sum(1 for m in after if holder(after, m) == end) > most:
        raise Refused(f"{roll[end]['name']} already holds {most} proxies", code="too_many_proxies")
    return [{"type": "proxy.granted", "member": member, "holder": to, "by": actor.pid, "at": ts}]


def _reaches(proxies: Mapping[str, str], start: str, target: str) -> bool:
    seen = set()
    while start in proxies and start not in seen:
        seen.add(start)
        start = proxies[start]
        if start == target:
            return True
    return False


def decide_revoke(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    member = _delegator(state, actor, args["from"])
    if member not in state["polls"]["proxies"]:
        raise Refused("there is no proxy to revoke", code="no_proxy")
    _no_open_vote(state)
    return [{"type": "proxy.revoked", "member": member, "by": actor.pid, "at": ts}]


# --- ballots ------------------------------------------------------------------------------------


def decide_cast(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    poll = get_poll(state, args["poll"])
    must_be_open(poll, ts)
    if poll["secret"]:
        raise Refused("this is a secret ballot: vote through the ballot box", code="secret_ballot")
    voter, weight = voter_for(state, poll, actor, args["for"])
    check_choice(poll, args["choice"])
    prior = poll["voted"].get(voter)
    to = [*TO_CHAIR, f"pid:{actor.pid}"]
    if prior is not None:
        if not poll["change"] or prior["by"] != actor.pid:
            raise already_voted(state, poll, voter)
        if prior["choice"] == args["choice"]:
            return []
        return [
            {
                "type": "ballot.changed",
                "id": poll["id"],
                "voter": voter,
                "by": actor.pid,
                "at": ts,
                "w": weight,
                "choice": args["choice"],
                "old": prior["choice"],
                "to": to,
            }
        ]
    return [
        {
            "type": "ballot.cast",
            "id": poll["id"],
            "voter": voter,
            "by": actor.pid,
            "at": ts,
            "w": weight,
            "choice": args["choice"],
            "to": to,
        }
    ]


# --- the clock ------------------------------------------------------------------------------


def deadline(state: State) -> int | None:
    times = []
    for poll in state["polls"]["polls"].values():
        if poll["state"] == PollState.OPEN and poll["closes_at"] is not None:
            times.append(poll["closes_at"])
        if poll.get("dirty"):
            times.append(_progress_due(poll))
    return min(times) if times else None


def _progress_due(poll: Poll) -> int:
    """When the chair's live count of ``poll`` may next be sent (log time)."""
    at = poll.get("progress_at")
    return PROGRESS_MS if at is None else at + PROGRESS_MS


def tick(state: State, ts: int) -> list[Event]:
    events: list[Event] = []
    for poll in state["polls"]["polls"].values():
        closes = poll["closes_at"]
        if poll["state"] == PollState.OPEN and closes is not None and ts >= closes:
            events += close_events(state, poll, closes, "timer")
        if poll.get("dirty") and ts >= _progress_due(poll):
            events.append(progress_event(state, poll, ts))
    return events


BALLOT_EVENTS = frozenset({"ballot.cast", "ballot.changed", "ballot.claimed", "ballot.deposited"})


def progress_event(state: State, poll: Poll, ts: int) -> PollProgress:
    return {
        "type": "poll.progress",
        "id": poll["id"],
        "at": ts,
        "progress": progress(state, poll),
        "to": TO_CHAIR,
    }


def react(state: State, events: list[Event], ts: int) -> list[Event]:
    """Tell the chair the live turnout, quorum and running outcome after ballots move.

    Computing it costs a pass over the roll and the people present, so while ballots pour
    in it is sent at most every ``PROGRESS_MS`` of log time; a ``tick`` sends the last one.
    """
    touched: list[str] = []
    for event in events:
        if (
            event["type"] == "ballot.cast"
            or event["type"] == "ballot.changed"
            or event["type"] == "ballot.claimed"
            or event["type"] == "ballot.deposited"
        ) and event["id"] not in touched:
            touched.append(event["id"])
    out: list[Event] = []
    for poll_id in touched:
        poll = state["polls"]["polls"].get(poll_id)
        if poll is not None and (poll.get("progress_at") is None or ts >= _progress_due(poll)):
            out.append(progress_event(state, poll, ts))
    return out


# --- apply: on every node's full state and on each client's view --------------------------------


def apply_created(state: State, event: PollCreated | PollUpdated) -> None:
    polls = state["polls"]
    poll = event["poll"]
    polls["polls"][poll["id"]] = copy.deepcopy(poll)
    if poll["id"] not in polls["order"]:
        polls["order"].append(poll["id"])
    if event["type"] == "poll.created":
        polls["seq"] = max(polls["seq"], event["seq"])


def apply_updated(state: State, event: PollUpdated) -> None:
    apply_created(state, event)


def apply_deleted(state: State, event: PollDeleted) -> None:
    polls = state["polls"]
    polls["polls"].pop(event["id"], None)
    if event["id"] in polls["order"]:
        polls["order"].remove(event["id"])


def apply_opened(state: State, event: PollOpened) -> None:
    polls = state["polls"]
    opened = copy.deepcopy(event["poll"])
    poll = polls["polls"].get(opened["id"])
    if poll is None:  # a client that could not see the draft
        polls["polls"][opened["id"]] = public_poll(opened, {})
    else:
        polls["polls"][opened["id"]] = {**poll, **opened}
    if opened["id"] not in polls["order"]:  # a voter's copy: polls in the order they opened
        polls["order"].append(opened["id"])
        polls["order"].sort(key=lambda p: opening(polls["polls"][p]))


def apply_timer(state: State, event: PollTimer) -> None:
    poll = find_poll(state, event["id"])
    if poll is not None:
        poll["closes_at"] = event["closes_at"]


def apply_closed(state: State, event: PollClosed) -> None:
    poll = find_poll(state, event["id"])
    if poll is not None:
        poll["state"] = PollState.CLOSED.value
        poll["closed_at"] = event["at"]


def apply_sealed(state: State, event: PollSealed) -> None:
    poll = find_poll(state, event["id"])
    if poll is not None:
        poll["sealed"] = True
        poll["result"] = copy.deepcopy(event["result"])


def apply_published(state: State, event: PollPublished) -> None:
    poll = find_poll(state, event["id"])
    if poll is not None:
        poll["state"] = PollState.PUBLISHED.value
        poll["published_at"] = event["at"]
        poll["sealed"] = True
        # The event's result is the public part (``public_result``): a copy that had the
        # whole from ``poll.sealed`` (the state, the chair's) keeps the roll call.
        result = copy.deepcopy(event["result"])
        held = poll.get("result")
        if result is not None and held:
            result = cast(FinalResult, {**held, **result})
        poll["result"] = result


def apply_granted(state: State, event: ProxyGranted) -> None:
    state["polls"]["proxies"][event["member"]] = event["holder"]


def apply_revoked(state: State, event: ProxyRevoked) -> None:
    state["polls"]["proxies"].pop(event["member"], None)


def apply_cast(state: State, event: BallotCast | BallotChanged) -> None:
    poll = find_poll(state, event["id"])
    if poll is None:
        return
    poll.setdefault("voted", {})[event["voter"]] = {
        "by": event["by"],
        "at": event["at"],
        "w": event["w"],
        "choice": event["choice"],
    }
    mark_dirty(poll)
    if "counts" in poll:
        if event["type"] == "ballot.changed":
            tally.add(poll, event["old"], event["w"], -1)
        tally.add(poll, event["choice"], event["w"])


def apply_changed(state: State, event: BallotChanged) -> None:
    apply_cast(state, event)


def apply_progress(state: State, event: PollProgress) -> None:
    poll = find_poll(state, event["id"])
    if poll is not None:
        poll["progress"] = copy.deepcopy(event["progress"])
        poll["progress_at"] = event["at"]
        poll["dirty"] = False


APPLY: dict[str, Apply] = {
    "poll.created": apply_created,
    "poll.updated": apply_updated,
    "poll.deleted": apply_deleted,
    "poll.keys": apply_keys,
    "poll.opened": apply_opened,
    "poll.timer": apply_timer,
    "poll.closed": apply_closed,
    "poll.sealed": apply_sealed,
    "poll.published": apply_published,
    "proxy.granted": apply_granted,
    "proxy.revoked": apply_revoked,
    "ballot.cast": apply_cast,
    "ballot.changed": apply_changed,
    "ballot.claimed": apply_claimed,
    "ballot.deposited": apply_deposited,
    "poll.progress": apply_progress,
}


# --- views ------------------------------------------------------------------------------------


def opening(poll: Poll) -> tuple[int, str]:
    """Where an open poll goes in a voter's list: by opening time, then id."""
    return poll.get("opened_at") or 0, poll["id"]


SHARED = ("roll", "voting", "proxies")
"""What everyone's view holds as it is in the state (the roll: one entry per member)."""


def view(state: State, person: Viewer | None) -> PollsState:
    """Moderators: everything but the ballot box itself. Others: polls from their opening,
    in the order they opened, their own voting record, and results once published.

    What a voter's copy holds is only what the events sent to them say (they never see a
    draft, ``poll.created`` or ``poll.sealed``): so no ``seq``, and ``sealed`` once published.
    """
    polls = state["polls"]
    shared = {key: copy.deepcopy(polls[key]) for key in SHARED}  # type: ignore[literal-required]
    return cast(PollsState, {**shared, **personal(state, person)})


def personal(state: State, person: Viewer | None) -> dict[str, Any]:
    """:func:`view` without :data:`SHARED` (the same for everyone)."""
    polls = state["polls"]
    chair = person is None or person.get("role") == MODERATOR
    out: dict[str, Any] = {"polls": {}, "order": []}
    if chair:
        out["seq"] = polls["seq"]
    pid = person.get("pid") if person else None
    org = person.get("org") if person else None
    for poll_id in polls["order"]:
        poll = polls["polls"][poll_id]
        if chair:
            shown: Poll = {**poll}
            shown.pop("ballots", None)  # before the copy: the box may be large
            if poll["secret"]:  # the chair follows a secret vote by its turnout (progress)
                shown["voted"] = {}
                shown.pop("pending", None)
                if "dirty" in shown:  # claims are not sent to the chair: nothing to redo
                    shown["dirty"] = False
            shown = copy.deepcopy(shown)
            for record in shown["voted"].values():
                record.pop("blinded", None)
        elif poll["state"] == PollState.DRAFT:
            continue
        else:
            mine = {pid, org} | {
                m for m, to in poll["proxies"].items() if holder(poll["proxies"], m) == org
            }
            shown = public_poll(
                poll, {v: _unblinded(rec) for v, rec in poll["voted"].items() if v in mine}
            )
            shown["sealed"] = poll["state"] == PollState.PUBLISHED
            if poll["state"] == PollState.PUBLISHED:
                shown["result"] = copy.deepcopy(public_result(poll["result"]))
        out["polls"][poll_id] = shown
        out["order"].append(poll_id)
    if not chair:
        out["order"].sort(key=lambda p: opening(out["polls"][p]))
    return out


def _unblinded(record: VoteRecord) -> VoteRecord:
    copied = copy.deepcopy(record)
    copied.pop("blinded", None)
    return copied


__all__ = [  # what other modules (ballots.py, exports, tests) take from here
    "GRACE_MS",
    "PROGRESS_MS",
    "SLICE",
    "PollState",
    "check_ballot",
    "check_claim",
    "check_deposit",
    "check_sealed",
    "SEALED_PER_CLAIM",
    "VOTER_ROLES",
    "closed_by_timer",
    "count_revealed",
    "electorate",
    "get_poll",
    "weight_classes",
]

SLICE = Slice(
    name="polls",
    init=init,
    commands=by_name(
        Command("poll.create", STAFF, check_create, decide_create),
        Command("poll.update", STAFF, check_update, decide_update),
        Command("poll.delete", STAFF, check_poll, decide_delete),
        Command("poll.open", STAFF, check_open, decide_open),
        Command("poll.timer", STAFF, check_timer, decide_timer),
        Command("poll.close", STAFF, check_poll, decide_close),
        Command("poll.publish", STAFF, check_poll, decide_publish),
        Command("poll.keys", frozenset({SYSTEM}), check_keys, decide_keys),
        Command("proxy.grant", PROXY_ROLES, check_grant, decide_grant),
        Command("proxy.revoke", PROXY_ROLES, check_revoke, decide_revoke),
        Command("ballot.cast", VOTER_ROLES, check_cast, decide_cast),
        Command("ballot.claim", VOTER_ROLES, check_claim, decide_claim),
        Command("ballot.deposit", frozenset({SYSTEM}), check_deposit, decide_deposit),
        Command("ballot.reveal", frozenset({SYSTEM}), check_reveal, decide_reveal),
    ),
    apply=APPLY,
    view=view,
    react=react,
    deadline=deadline,
    tick=tick,
    shared=SHARED,
    personal=personal,
)
