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
a member takes its ballot, with a *blinded* token) and ``ballot.deposit`` (what: tokens
signed blindly by a node, with their choices, several voters' at once, given by the node's
ballot box, never by a person). ``pending`` counts claims whose ballot is not yet in the box;
a closed secret poll is *sealed* once nothing is pending, or ``GRACE_MS`` after closing.

State (``state["polls"]``)::

    roll     {member: {name, country, w}}      weights in hundredths
    voting   {proxy_chains, max_proxies, key_bits}
    proxies  {from_member: to_member}
    polls    {id: poll}, order [id…], seq
    poll     definition (polldefs) + state, opened_at, closes_at, closed_at, sealed,
             published_at, keys {w: {n, e}}, proxies, voted {voter: {by, at, w, choice?,
             blinded?}}, pending {w: n}, ballots {token: {choice, w, rev, last, sig}},
             counts {option: [n, w]}, cast [n, w], progress, result
"""

from __future__ import annotations

import copy
from collections import ChainMap
from enum import StrEnum
from typing import Any

from . import blind, polldefs, tally
from .errors import BadArgs, Refused
from .types import (
    MODERATOR,
    PANELIST,
    PARTICIPANT,
    STAFF,
    SYSTEM,
    Actor,
    Command,
    Event,
    RoomConfig,
    Slice,
    State,
    arg_int,
    arg_str,
)

GRACE_MS = 10_000
"""How long a closed secret poll waits for ballots claimed before the close."""
PROGRESS_MS = 250
"""The chair's live count is recomputed at most this often (log time) while ballots flow."""
VOTER_ROLES = frozenset({PARTICIPANT, PANELIST})
PROXY_ROLES = frozenset({PARTICIPANT, PANELIST, MODERATOR})
TO_CHAIR = ["role:moderator"]
MAX_BATCH = 500
HEX = frozenset("0123456789abcdef")


class PollState(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    CLOSED = "closed"
    PUBLISHED = "published"


MOVES = {PollState.DRAFT: PollState.OPEN, PollState.OPEN: PollState.CLOSED,
         PollState.CLOSED: PollState.PUBLISHED}
DEFINITION = ("question", "kind", "max", "options", "electorate", "secret", "change",
              "seconds", "quorum", "threshold", "mix")
PUBLIC = ("id", *DEFINITION, "state", "opened_at", "closes_at", "closed_at", "sealed",
          "published_at", "keys", "proxies")


def init(config: RoomConfig) -> dict[str, Any]:
    polls = {p["id"]: new_poll(p, p["id"]) for p in
             polldefs.from_config(config.id, config.extra, config.floor)}
    return {
        "roll": {m.id: {"name": m.name, "country": m.country, "w": round(m.weight * 100)}
                 for m in config.members},
        "voting": polldefs.voting_settings(config.id, config.extra),
        "proxies": {},
        "polls": polls,
        "order": list(polls),
        "seq": 0,
    }


def new_poll(definition: dict[str, Any], poll_id: str) -> dict[str, Any]:
    poll = {k: copy.deepcopy(definition[k]) for k in DEFINITION}
    poll.update(id=poll_id, state=PollState.DRAFT.value, opened_at=None, closes_at=None,
                closed_at=None, sealed=False, published_at=None, keys=None, proxies={},
                voted={}, pending={}, ballots={}, counts=tally.empty_counts(poll["options"]),
                cast=[0, 0], progress=None, progress_at=None, dirty=False, result=None)
    return poll


def public(poll: dict[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(poll[k]) for k in PUBLIC if k in poll}


# --- lookups --------------------------------------------------------------------------------


def get_poll(state: State, poll_id: str) -> dict[str, Any]:
    poll: dict[str, Any] | None = state["polls"]["polls"].get(poll_id)
    if poll is None:
        raise Refused(f"there is no poll {poll_id!r}", code="unknown_poll")
    return poll


def move(poll: dict[str, Any], to: PollState) -> None:
    """Refuse unless ``poll`` may move to ``to`` now; the code names the state it is in."""
    now = PollState(poll["state"])
    if MOVES.get(now) is not to:
        raise Refused(f"the poll is {now.value}; it cannot become {to.value}",
                      code=f"poll_is_{now.value}")


def closed_by_timer(poll: dict[str, Any], ts: int) -> bool:
    return poll["closes_at"] is not None and ts >= poll["closes_at"]


def must_be_open(poll: dict[str, Any], ts: int) -> None:
    if poll["state"] != PollState.OPEN:
        raise Refused(f"the poll is {poll['state']}", code=f"poll_is_{poll['state']}")
    if closed_by_timer(poll, ts):
        raise Refused("the poll's time is up", code="poll_is_closed")


def holder(proxies: dict[str, str], member: str) -> str:
    """Who casts ``member``'s ballot: follow its proxy (and, if allowed, the chain)."""
    seen = {member}
    while member in proxies:
        member = proxies[member]
        if member in seen:  # a cycle is refused when given; never loop on a bad log
            break
        seen.add(member)
    return member


def voter_for(state: State, poll: dict[str, Any], actor: Actor,
              on_behalf: str | None) -> tuple[str, int]:
    """The voter key (member id, or pid in a quick poll) and weight this actor casts for."""
    person = state["core"]["people"].get(actor.pid)
    if person is None or not person["conns"]:
        raise Refused("you are not present in this room", code="not_present")
    if poll["electorate"] == "present":
        if on_behalf is not None:
            raise Refused("proxies apply to formal votes only", code="no_proxy")
        return actor.pid, 100
    roll = state["polls"]["roll"]
    org = person.get("org")
    if org not in roll:
        raise Refused("your organisation is not on the voter roll", code="not_on_roll")
    member = on_behalf or org
    if member not in roll:
        raise Refused(f"{member!r} is not on the voter roll", code="not_on_roll")
    cast_by = holder(poll["proxies"], member)
    if member != org and cast_by != org:
        raise Refused(f"{roll[org]['name']} holds no proxy for {roll[member]['name']}",
                      code="no_proxy")
    if member == org and cast_by != org:
        raise Refused(f"your vote is delegated to {roll[cast_by]['name']}", code="delegated")
    return member, int(roll[member]["w"])


def check_choice(poll: dict[str, Any], choice: list[str]) -> None:
    ids = {o["id"] for o in poll["options"]}
    for option in choice:
        if option not in ids:
            raise Refused(f"the poll has no option {option!r}", code="unknown_option")
    if len(set(choice)) != len(choice):
        raise Refused("an option is chosen twice", code="duplicate_choice")
    if not choice:
        raise Refused("choose an option", code="no_choice")
    if len(choice) > poll["max"]:
        raise Refused(f"choose at most {poll['max']} option(s)", code="too_many_choices")


def already_voted(state: State, poll: dict[str, Any], voter: str) -> Refused:
    if poll["electorate"] == "roll":
        name = state["polls"]["roll"][voter]["name"]
        return Refused(f"{name} has already voted in this poll", code="already_voted")
    return Refused("you have already voted in this poll", code="already_voted")


def electorate(state: State, poll: dict[str, Any]) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(count, weight)`` of the whole electorate and of the part of it present now."""
    people = state["core"]["people"].values()
    online = [p for p in people if p["conns"] and p["role"] in VOTER_ROLES]
    if poll["electorate"] == "present":
        pids = {p["pid"] for p in online} | set(poll["voted"])
        return (len(pids), 100 * len(pids)), (len(pids), 100 * len(pids))
    roll = state["polls"]["roll"]
    orgs = {p.get("org") for p in online}
    here = [m for m in roll if holder(poll["proxies"], m) in orgs or m in poll["voted"]]
    return ((len(roll), sum(m["w"] for m in roll.values())),
            (len(here), sum(roll[m]["w"] for m in here)))


def progress(state: State, poll: dict[str, Any]) -> dict[str, Any]:
    eligible, present = electorate(state, poll)
    out = tally.result(poll, eligible, present)
    out["turnout"] = {"n": len(poll["voted"]),
                      "w": sum(v["w"] for v in poll["voted"].values())}
    out["pending"] = sum(poll["pending"].values())
    return out


def final_result(state: State, poll: dict[str, Any], ts: int) -> dict[str, Any]:
    out = progress(state, poll)
    out["opened_at"], out["closed_at"], out["sealed_at"] = poll["opened_at"], \
        poll["closed_at"], ts
    out["missing"] = out.pop("pending")
    if poll["secret"]:
        out["receipts"] = sorted(
            ({"receipt": blind.receipt(token), "choice": b["choice"], "w": b["w"]}
             for token, b in poll["ballots"].items()), key=lambda r: r["receipt"])
        out["keys"] = poll["keys"]
    else:
        people = state["core"]["people"]
        roll = state["polls"]["roll"]
        out["roll_call"] = [
            {"voter": voter,
             "name": roll[voter]["name"] if voter in roll else people.get(voter, {}).get(
                 "name", voter),
             "by": people.get(v["by"], {}).get("name", v["by"]), "choice": v["choice"],
             "w": v["w"]}
            for voter, v in sorted(poll["voted"].items())]
    return out


def seal_events(state: State, poll: dict[str, Any], ts: int) -> list[Event]:
    return [{"type": "poll.sealed", "id": poll["id"], "at": ts,
             "result": final_result(state, poll, ts), "to": TO_CHAIR}]


# --- argument checks ---------------------------------------------------------------------


def _poll_id(args: dict[str, Any]) -> str:
    value = arg_str(args, "poll", max_len=40)
    assert value is not None
    return value


def _hex(args: dict[str, Any], key: str, max_len: int, required: bool = True) -> str | None:
    value = arg_str(args, key, max_len=max_len, required=required)
    if value is not None and (not value or not set(value) <= HEX):
        raise BadArgs(f"'{key}' must be lower-case hexadecimal")
    return value


def _choice(args: dict[str, Any]) -> list[str]:
    choice = args.get("choice")
    if isinstance(choice, str):
        choice = [choice]
    if not isinstance(choice, list) or len(choice) > polldefs.MAX_OPTIONS or not all(
            isinstance(c, str) and len(c) <= 40 for c in choice):
        raise BadArgs("'choice' must be an option id or a list of option ids")
    return choice


def check_poll(args: dict[str, Any]) -> dict[str, Any]:
    return {"poll": _poll_id(args)}


def check_create(args: dict[str, Any]) -> dict[str, Any]:
    definition = args.get("def")
    if not isinstance(definition, dict):
        raise BadArgs("'def' must be a poll definition")
    return {"def": definition}


def check_update(args: dict[str, Any]) -> dict[str, Any]:
    return {**check_create(args), "poll": _poll_id(args)}


def check_open(args: dict[str, Any]) -> dict[str, Any]:
    seconds = arg_int(args, "seconds", lo=0, hi=polldefs.MAX_SECONDS, required=False)
    return {"poll": _poll_id(args), "seconds": seconds}


def check_timer(args: dict[str, Any]) -> dict[str, Any]:
    return {"poll": _poll_id(args),
            "seconds": arg_int(args, "seconds", lo=0, hi=polldefs.MAX_SECONDS)}


def check_cast(args: dict[str, Any]) -> dict[str, Any]:
    return {"poll": _poll_id(args), "choice": _choice(args),
            "for": arg_str(args, "for", max_len=120, required=False)}


def check_claim(args: dict[str, Any]) -> dict[str, Any]:
    return {"poll": _poll_id(args), "blinded": _hex(args, "blinded", 1024),
            "for": arg_str(args, "for", max_len=120, required=False)}


def check_ballot(data: Any) -> dict[str, Any]:
    """One ballot of a deposit: ``{token, sig, w, choice, rev, reveal}``."""
    if not isinstance(data, dict):
        raise BadArgs("a ballot must be a map")
    token = _hex(data, "token", 64)
    assert token is not None
    if len(token) != 64:
        raise BadArgs("'token' must be 64 hexadecimal digits")
    rev = arg_int(data, "rev", lo=0, hi=blind.CHAIN, default=0)
    reveal = _hex(data, "reveal", 64, required=bool(rev))
    return {"token": token, "sig": _hex(data, "sig", 1024),
            "w": arg_int(data, "w", lo=1, hi=10**9), "choice": _choice(data), "rev": rev,
            "reveal": reveal if rev else None}


def check_deposit(args: dict[str, Any]) -> dict[str, Any]:
    ballots = args.get("ballots")
    if not isinstance(ballots, list) or not 1 <= len(ballots) <= MAX_BATCH:
        raise BadArgs(f"'ballots' must be a list of 1 to {MAX_BATCH} ballots")
    return {"poll": _poll_id(args), "ballots": [check_ballot(b) for b in ballots]}


def check_keys(args: dict[str, Any]) -> dict[str, Any]:
    keys = args.get("keys")
    if not isinstance(keys, dict) or not keys:
        raise BadArgs("'keys' must map weight classes to public keys")
    out = {}
    for w, key in keys.items():
        if not isinstance(key, dict):
            raise BadArgs("a key is {n, e}")
        out[str(w)] = {"n": _hex(key, "n", 1024), "e": arg_int(key, "e", lo=3, hi=2**31)}
    return {"poll": _poll_id(args), "keys": out}


def check_grant(args: dict[str, Any]) -> dict[str, Any]:
    return {"to": arg_str(args, "to", max_len=120),
            "from": arg_str(args, "from", max_len=120, required=False)}


def check_revoke(args: dict[str, Any]) -> dict[str, Any]:
    return {"from": arg_str(args, "from", max_len=120, required=False)}


# --- the chair's commands -------------------------------------------------------------------


def _floor(state: State) -> str:
    floor: str = state["core"]["floor"]
    return floor


def decide_create(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    definition = polldefs.for_command(args["def"], _floor(state))
    seq = state["polls"]["seq"] + 1
    poll_id = f"p{seq}"
    while poll_id in state["polls"]["polls"]:
        seq += 1
        poll_id = f"p{seq}"
    return [{"type": "poll.created", "poll": new_poll(definition, poll_id), "seq": seq,
             "by": actor.pid, "to": TO_CHAIR}]


def decide_update(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    poll = get_poll(state, args["poll"])
    if poll["state"] != PollState.DRAFT:
        raise Refused(f"only a draft can be edited; the poll is {poll['state']}",
                      code=f"poll_is_{poll['state']}")
    definition = polldefs.for_command(args["def"], _floor(state))
    return [{"type": "poll.updated", "poll": new_poll(definition, poll["id"]),
             "by": actor.pid, "to": TO_CHAIR}]


def decide_delete(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    poll = get_poll(state, args["poll"])
    if poll["state"] != PollState.DRAFT:
        raise Refused(f"only a draft can be deleted; the poll is {poll['state']}",
                      code=f"poll_is_{poll['state']}")
    return [{"type": "poll.deleted", "id": poll["id"], "to": TO_CHAIR}]


def weight_classes(state: State, poll: dict[str, Any]) -> list[int]:
    """The weights (hundredths) a secret poll needs a signing key for."""
    if poll["electorate"] == "present":
        return [100]
    return sorted({int(m["w"]) for m in state["polls"]["roll"].values()})


def decide_keys(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    poll = get_poll(state, args["poll"])
    if poll["state"] != PollState.DRAFT or not poll["secret"]:
        return []  # a late or stray key offer changes nothing
    if poll["keys"] is not None:
        if poll["keys"] == args["keys"]:
            return []
        raise Refused("this poll already has other keys (nodes with different secrets?)",
                      code="keys_mismatch")
    if sorted(int(w) for w in args["keys"]) != weight_classes(state, poll):
        raise Refused("keys must cover every weight class", code="keys_mismatch")
    return [{"type": "poll.keys", "id": poll["id"], "keys": args["keys"], "to": TO_CHAIR}]


def decide_open(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    poll = get_poll(state, args["poll"])
    move(poll, PollState.OPEN)
    if poll["electorate"] == "roll" and not state["polls"]["roll"]:
        raise Refused("the assembly has no voter roll", code="no_roll")
    if poll["secret"] and poll["keys"] is None:
        raise Refused("the ballot keys are still being prepared; try again in a moment",
                      code="keys_missing")
    seconds = args["seconds"] if args["seconds"] is not None else poll["seconds"]
    opened = public(poll)
    opened.update(state=PollState.OPEN.value, opened_at=ts,
                  closes_at=ts + seconds * 1000 if seconds else None,
                  proxies=dict(state["polls"]["proxies"]) if poll["electorate"] == "roll"
                  else {})
    return [{"type": "poll.opened", "poll": opened, "by": actor.pid}]


def decide_timer(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    poll = get_poll(state, args["poll"])
    must_be_open(poll, ts)
    seconds = args["seconds"]
    return [{"type": "poll.timer", "id": poll["id"],
             "closes_at": ts + seconds * 1000 if seconds else None}]


def close_events(state: State, poll: dict[str, Any], ts: int, by: str) -> list[Event]:
    events: list[Event] = [{"type": "poll.closed", "id": poll["id"], "at": ts, "by": by}]
    if not poll["secret"] or not any(poll["pending"].values()):
        after = {**poll, "state": PollState.CLOSED.value, "closed_at": ts}
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
        raise Refused(f"{sum(poll['pending'].values())} ballot(s) claimed before the close "
                      f"are still on their way; publish in a few seconds",
                      code="ballots_pending")
    return [{"type": "poll.published", "id": poll["id"], "at": ts, "result": poll["result"]}]


# --- proxies ----------------------------------------------------------------------------------


def _delegator(state: State, actor: Actor, given: str | None) -> str:
    roll = state["polls"]["roll"]
    if actor.role == MODERATOR:
        if given is None:
            raise BadArgs("'from' is required when the chair records a proxy")
        member = given
    else:
        person = state["core"]["people"].get(actor.pid, {})
        member = person.get("org")
        if given is not None and given != member:
            raise Refused("only your own organisation's vote can be delegated",
                          code="forbidden")
    if member not in roll:
        raise Refused(f"{member!r} is not on the voter roll", code="not_on_roll")
    assert member is not None
    return member


def _no_open_vote(state: State) -> None:
    for poll in state["polls"]["polls"].values():
        if poll["electorate"] == "roll" and poll["state"] == PollState.OPEN:
            raise Refused("proxies can change only while no formal vote is open",
                          code="poll_is_open")


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
            raise Refused(f"{roll[to]['name']} has itself delegated its vote; proxies do not "
                          f"chain in this assembly", code="proxy_chain")
        if member in proxies.values():
            raise Refused(f"{roll[member]['name']} holds proxies and cannot delegate; "
                          f"proxies do not chain in this assembly", code="proxy_chain")
    elif _reaches(after, to, member):
        raise Refused("this proxy would make a cycle", code="proxy_cycle")
    most = voting["max_proxies"]
    end = holder(after, to)
    if most is not None and sum(1 for m in after if holder(after, m) == end) > most:
        raise Refused(f"{roll[end]['name']} already holds {most} proxies",
                      code="too_many_proxies")
    return [{"type": "proxy.granted", "member": member, "holder": to, "by": actor.pid,
             "at": ts}]


def _reaches(proxies: dict[str, str], start: str, target: str) -> bool:
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
        raise Refused("this is a secret ballot: vote through the ballot box",
                      code="secret_ballot")
    voter, weight = voter_for(state, poll, actor, args["for"])
    check_choice(poll, args["choice"])
    prior = poll["voted"].get(voter)
    to = [*TO_CHAIR, f"pid:{actor.pid}"]
    if prior is not None:
        if not poll["change"] or prior["by"] != actor.pid:
            raise already_voted(state, poll, voter)
        if prior["choice"] == args["choice"]:
            return []
        return [{"type": "ballot.changed", "id": poll["id"], "voter": voter, "by": actor.pid,
                 "at": ts, "w": weight, "choice": args["choice"], "old": prior["choice"],
                 "to": to}]
    return [{"type": "ballot.cast", "id": poll["id"], "voter": voter, "by": actor.pid,
             "at": ts, "w": weight, "choice": args["choice"], "to": to}]


def decide_claim(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    poll = get_poll(state, args["poll"])
    must_be_open(poll, ts)
    if not poll["secret"]:
        raise Refused("this is an open ballot: use ballot.cast", code="open_ballot")
    voter, weight = voter_for(state, poll, actor, args["for"])
    prior = poll["voted"].get(voter)
    if prior is not None:
        if prior.get("blinded") == args["blinded"]:
            return []  # the same claim again (a retry from the same device): nothing new
        raise already_voted(state, poll, voter)
    return [{"type": "ballot.claimed", "id": poll["id"], "voter": voter, "by": actor.pid,
             "at": ts, "w": weight, "blinded": args["blinded"],
             "to": [*TO_CHAIR, f"pid:{actor.pid}"]}]


def deposit_problem(state: State, poll: dict[str, Any], ballot: dict[str, Any],
                    ts: int) -> Refused | None:
    """Why ``ballot`` cannot go into ``poll``'s box now, or ``None`` if it can (or is in)."""
    if not poll["secret"]:
        return Refused("this is an open ballot", code="open_ballot")
    if poll["state"] not in (PollState.OPEN, PollState.CLOSED) or poll["sealed"]:
        return Refused(f"the poll is {poll['state']} and its box is sealed",
                       code=f"poll_is_{poll['state']}")
    late = poll["state"] == PollState.CLOSED or closed_by_timer(poll, ts)
    prior = poll["ballots"].get(ballot["token"])
    if prior is not None:
        if prior["rev"] == ballot["rev"] and prior["choice"] == ballot["choice"]:
            return None  # already in the box: a retry
        if ballot["rev"] <= prior["rev"]:
            return Refused("a later version of this ballot is in the box", code="stale_ballot")
        if not poll["change"]:
            return Refused("ballots cannot be changed in this poll", code="already_voted")
        if late:
            return Refused("the poll is closed", code="poll_is_closed")
        if ballot["reveal"] is None or not blind.follows(
                ballot["reveal"], ballot["rev"] - prior["rev"], prior["last"]):
            return Refused("this change does not prove it comes from the ballot's owner",
                           code="bad_ballot")
    else:
        key = (poll["keys"] or {}).get(str(ballot["w"]))
        if key is None:
            return Refused("no key for this weight", code="bad_ballot")
        data = blind.message(state["meta"]["room"], poll["id"], ballot["w"], ballot["token"])
        if not blind.verify(blind.PublicKey.from_wire(key), data, int(ballot["sig"], 16)):
            return Refused("the ballot's signature does not verify", code="bad_ballot")
        if ballot["rev"] and (ballot["reveal"] is None or not blind.follows(
                ballot["reveal"], ballot["rev"], ballot["token"])):
            return Refused("this change does not follow from the token", code="bad_ballot")
        if not poll["pending"].get(str(ballot["w"])):
            return Refused("no claimed ballot is waiting for this one", code="no_claim")
    try:
        check_choice(poll, ballot["choice"])
    except Refused as exc:
        return exc
    return None


def decide_deposit(state: State, actor: Actor, args: dict[str, Any], ts: int) -> list[Event]:
    poll = get_poll(state, args["poll"])
    events: list[Event] = []
    # A working copy that sees this batch's own ballots (a batch may hold a ballot and its
    # change); the fold applies the events afterwards, decide leaves the state alone.
    fresh: dict[str, dict[str, Any]] = {}
    work = {**poll, "ballots": ChainMap(fresh, poll["ballots"]),
            "pending": dict(poll["pending"]),
            "counts": {k: list(v) for k, v in poll["counts"].items()},
            "cast": list(poll["cast"])}
    for ballot in sorted(args["ballots"], key=lambda b: (b["token"], b["rev"])):
        if deposit_problem(state, work, ballot, ts) is not None:
            continue  # the node told its voter already; a lost race changes nothing
        prior = work["ballots"].get(ballot["token"])
        if prior is not None and prior["rev"] == ballot["rev"]:
            continue
        last = ballot["reveal"] or ballot["token"]
        sig = ballot["sig"] if prior is None else prior["sig"]
        events.append({"type": "ballot.deposited", "id": poll["id"], "token": ballot["token"],
                       "receipt": blind.receipt(ballot["token"]), "choice": ballot["choice"],
                       "w": ballot["w"], "rev": ballot["rev"], "last": last, "sig": sig,
                       "old": prior["choice"] if prior is not None else None,
                       "to": TO_CHAIR})
        fresh[ballot["token"]] = {"rev": ballot["rev"], "choice": ballot["choice"],
                                  "w": ballot["w"], "last": last, "sig": sig}
        if prior is None:
            work["pending"][str(ballot["w"])] -= 1
        else:
            tally.add(work, prior["choice"], ballot["w"], -1)
        tally.add(work, ballot["choice"], ballot["w"])
    if (poll["state"] == PollState.CLOSED and not poll["sealed"] and events
            and not any(work["pending"].values())):
        work["ballots"] = {**poll["ballots"], **fresh}
        events += seal_events(state, work, ts)
    return events


# --- the clock ------------------------------------------------------------------------------


def deadline(state: State) -> int | None:
    times = []
    for poll in state["polls"]["polls"].values():
        if poll["state"] == PollState.OPEN and poll["closes_at"] is not None:
            times.append(poll["closes_at"])
        elif poll["state"] == PollState.CLOSED and not poll["sealed"]:
            times.append(poll["closed_at"] + GRACE_MS)
        if poll.get("dirty"):
            times.append(poll["progress_at"] + PROGRESS_MS)
    return min(times) if times else None


def tick(state: State, ts: int) -> list[Event]:
    events: list[Event] = []
    for poll in state["polls"]["polls"].values():
        if poll["state"] == PollState.OPEN and closed_by_timer(poll, ts):
            events += close_events(state, poll, poll["closes_at"], "timer")
        elif (poll["state"] == PollState.CLOSED and not poll["sealed"]
              and ts >= poll["closed_at"] + GRACE_MS):
            events += seal_events(state, poll, ts)
        if poll.get("dirty") and ts >= poll["progress_at"] + PROGRESS_MS:
            events.append(progress_event(state, poll, ts))
    return events


BALLOT_EVENTS = frozenset({"ballot.cast", "ballot.changed", "ballot.claimed",
                           "ballot.deposited"})


def progress_event(state: State, poll: dict[str, Any], ts: int) -> Event:
    return {"type": "poll.progress", "id": poll["id"], "at": ts,
            "progress": progress(state, poll), "to": TO_CHAIR}


def react(state: State, events: list[Event], ts: int) -> list[Event]:
    """Tell the chair the live turnout, quorum and running outcome after ballots move.

    Computing it costs a pass over the roll and the people present, so while ballots pour
    in it is sent at most every ``PROGRESS_MS`` of log time; a ``tick`` sends the last one.
    """
    touched = []
    for event in events:
        if event["type"] in BALLOT_EVENTS and event["id"] not in touched:
            touched.append(event["id"])
    out: list[Event] = []
    for poll_id in touched:
        poll = state["polls"]["polls"].get(poll_id)
        if poll is not None and (poll.get("progress_at") is None
                                 or ts >= poll["progress_at"] + PROGRESS_MS):
            out.append(progress_event(state, poll, ts))
    return out


# --- apply: on every node's full state and on each client's view --------------------------------


def _find(state: State, poll_id: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = state["polls"]["polls"].get(poll_id)
    return found


def apply_created(state: State, event: Event) -> None:
    polls = state["polls"]
    poll = event["poll"]
    polls["polls"][poll["id"]] = copy.deepcopy(poll)
    if poll["id"] not in polls["order"]:
        polls["order"].append(poll["id"])
    polls["seq"] = max(polls["seq"], event.get("seq", 0))


def apply_updated(state: State, event: Event) -> None:
    apply_created(state, event)


def apply_deleted(state: State, event: Event) -> None:
    polls = state["polls"]
    polls["polls"].pop(event["id"], None)
    if event["id"] in polls["order"]:
        polls["order"].remove(event["id"])


def apply_keys(state: State, event: Event) -> None:
    poll = _find(state, event["id"])
    if poll is not None:
        poll["keys"] = copy.deepcopy(event["keys"])


def apply_opened(state: State, event: Event) -> None:
    polls = state["polls"]
    opened = copy.deepcopy(event["poll"])
    poll = polls["polls"].setdefault(opened["id"], {"voted": {}})
    poll.update(opened)
    if opened["id"] not in polls["order"]:
        polls["order"].append(opened["id"])


def apply_timer(state: State, event: Event) -> None:
    poll = _find(state, event["id"])
    if poll is not None:
        poll["closes_at"] = event["closes_at"]


def apply_closed(state: State, event: Event) -> None:
    poll = _find(state, event["id"])
    if poll is not None:
        poll["state"] = PollState.CLOSED.value
        poll["closed_at"] = event["at"]


def apply_sealed(state: State, event: Event) -> None:
    poll = _find(state, event["id"])
    if poll is not None:
        poll["sealed"] = True
        poll["result"] = copy.deepcopy(event["result"])


def apply_published(state: State, event: Event) -> None:
    poll = _find(state, event["id"])
    if poll is not None:
        poll["state"] = PollState.PUBLISHED.value
        poll["published_at"] = event["at"]
        poll["sealed"] = True
        poll["result"] = copy.deepcopy(event["result"])


def apply_granted(state: State, event: Event) -> None:
    state["polls"]["proxies"][event["member"]] = event["holder"]


def apply_revoked(state: State, event: Event) -> None:
    state["polls"]["proxies"].pop(event["member"], None)


def apply_cast(state: State, event: Event) -> None:
    poll = _find(state, event["id"])
    if poll is None:
        return
    poll.setdefault("voted", {})[event["voter"]] = {
        "by": event["by"], "at": event["at"], "w": event["w"], "choice": event["choice"]}
    _dirty(poll)
    if "counts" in poll:
        if event.get("old") is not None:
            tally.add(poll, event["old"], event["w"], -1)
        tally.add(poll, event["choice"], event["w"])


def apply_changed(state: State, event: Event) -> None:
    apply_cast(state, event)


def apply_claimed(state: State, event: Event) -> None:
    poll = _find(state, event["id"])
    if poll is None:
        return
    poll.setdefault("voted", {})[event["voter"]] = {
        "by": event["by"], "at": event["at"], "w": event["w"], "blinded": event["blinded"]}
    _dirty(poll)
    if "pending" in poll:
        w = str(event["w"])
        poll["pending"][w] = poll["pending"].get(w, 0) + 1


def apply_deposited(state: State, event: Event) -> None:
    poll = _find(state, event["id"])
    if poll is None or "counts" not in poll:
        return
    _dirty(poll)
    w = str(event["w"])
    if event["old"] is None:
        poll["pending"][w] = poll["pending"].get(w, 0) - 1
    else:
        tally.add(poll, event["old"], event["w"], -1)
    tally.add(poll, event["choice"], event["w"])
    if "ballots" in poll:
        poll["ballots"][event["token"]] = {"rev": event["rev"], "choice": event["choice"],
                                           "w": event["w"], "last": event["last"],
                                           "sig": event["sig"]}


def apply_progress(state: State, event: Event) -> None:
    poll = _find(state, event["id"])
    if poll is not None:
        poll["progress"] = copy.deepcopy(event["progress"])
        poll["progress_at"] = event.get("at")
        poll["dirty"] = False


def _dirty(poll: dict[str, Any]) -> None:
    if "dirty" in poll:  # the full state only: a client's copy has no use for it
        poll["dirty"] = True


APPLY = {
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


def view(state: State, person: dict[str, Any] | None) -> dict[str, Any]:
    """Moderators: everything but the ballot box itself. Others: polls from their opening,
    their own voting record, and results once published."""
    polls = state["polls"]
    chair = person is None or person.get("role") == MODERATOR
    out: dict[str, Any] = {"roll": copy.deepcopy(polls["roll"]),
                           "voting": dict(polls["voting"]),
                           "proxies": dict(polls["proxies"]), "seq": polls["seq"],
                           "polls": {}, "order": []}
    pid = person.get("pid") if person else None
    org = person.get("org") if person else None
    for poll_id in polls["order"]:
        poll = polls["polls"][poll_id]
        if chair:
            shown = {k: copy.deepcopy(v) for k, v in poll.items() if k != "ballots"}
            for record in shown["voted"].values():
                record.pop("blinded", None)
        elif poll["state"] == PollState.DRAFT:
            continue
        else:
            shown = public(poll)
            mine = {pid, org} | {m for m, to in poll["proxies"].items()
                                 if holder(poll["proxies"], m) == org}
            shown["voted"] = {v: {k: x for k, x in rec.items() if k != "blinded"}
                              for v, rec in poll["voted"].items() if v in mine}
            if poll["state"] == PollState.PUBLISHED:
                shown["result"] = copy.deepcopy(poll["result"])
        out["polls"][poll_id] = shown
        out["order"].append(poll_id)
    return out


SLICE = Slice(
    name="polls",
    init=init,
    commands={
        c.name: c
        for c in (
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
        )
    },
    apply=APPLY,
    view=view,
    react=react,
    deadline=deadline,
    tick=tick,
)
