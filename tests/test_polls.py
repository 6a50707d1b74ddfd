"""The polls slice, folded in memory: lifecycle, electorates, proxies, ballots, tally.

Reducer properties use hypothesis; the multi-node, Redis and browser tests live in
test_polls_nodes.py and test_polls_browser.py.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server import blind, fold, polldefs
from server.errors import ConfigError
from server.polls import GRACE_MS
from tests.polls_helpers import FORMAL, QUICK, Device, Room, key_for, roll, room_config


def formal_room(*weights: float, poll: dict[str, Any] | None = None, **voting: Any) -> Room:
    room = Room(room_config(roll(*weights), [poll or FORMAL], **voting))
    room.join("chair", "moderator")
    for i in range(len(weights)):
        room.join(f"rep{i}", org=f"m{i}")
    return room


def ok(out: fold.Outcome) -> list[dict[str, Any]]:
    assert out.error is None, out.error
    return out.events


def refused(out: fold.Outcome, code: str) -> None:
    assert out.error is not None, f"expected {code}, got events {out.events}"
    assert out.error["code"] == code, out.error


# --- definitions and config -------------------------------------------------------------------


def test_config_polls_are_drafts_in_every_language(assembly: Any) -> None:
    state = fold.new_state(assembly.rooms["plenary"])
    vote = state["polls"]["polls"]["strategic-framework"]
    assert vote["state"] == "draft" and vote["secret"] and vote["electorate"] == "roll"
    assert set(vote["question"]) == {"en", "es", "fr", "ru"}
    assert [o["id"] for o in vote["options"]] == ["yes", "no", "abstain"]
    assert all(set(o["text"]) == {"en", "es", "fr", "ru"} for o in vote["options"])
    quick = state["polls"]["polls"]["next-assembly"]
    assert quick["electorate"] == "present" and quick["seconds"] == 60


@pytest.mark.parametrize(
    "table, key",
    [
        ({"id": "x", "question": {"es": "¿?"}, "kind": "yesno"}, "polls[0].question"),
        ({"id": "x", "question": "Q", "kind": "single", "options": ["a"]}, "polls[0].options"),
        ({"id": "x", "question": "Q", "kind": "weird"}, "polls[0].kind"),
        (
            {"id": "x", "question": "Q", "kind": "multiple", "options": ["a", "b"], "max": 3},
            "polls[0].max",
        ),
        (
            {"id": "x", "question": "Q", "kind": "yesno", "quorum": {"fraction": 2}},
            "polls[0].quorum.fraction",
        ),
        (
            {"id": "x", "question": "Q", "kind": "yesno", "threshold": "most"},
            "polls[0].threshold.rule",
        ),
        ({"id": "X!", "question": "Q", "kind": "yesno"}, "polls[0].id"),
        ({"id": "x", "question": "Q", "kind": "yesno", "colour": "red"}, "polls[0].colour"),
        ({"id": "x", "question": "Q", "kind": "yesno", "mix": 3}, "polls[0].mix"),
        ({"id": "x", "question": "Q", "kind": "yesno", "secret": True, "mix": 2}, "polls[0].mix"),
    ],
)
def test_bad_config_names_the_key(table: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        polldefs.from_config("hall", {"polls": [table]}, "en")
    assert info.value.key == f"rooms[hall].{key}", info.value


def test_bad_voting_table() -> None:
    with pytest.raises(ConfigError, match="max_proxies"):
        polldefs.voting_settings("hall", {"voting": {"max_proxies": 0}})
    with pytest.raises(ConfigError, match="proxy_chain"):
        polldefs.voting_settings("hall", {"voting": {"proxy_chain": True}})


# --- lifecycle ------------------------------------------------------------------------------


def test_lifecycle_and_illegal_moves_name_the_state() -> None:
    room = formal_room(1, 1)
    refused(room.chair("poll.close", {"poll": "vote"}), "poll_is_draft")
    refused(room.chair("poll.publish", {"poll": "vote"}), "poll_is_draft")
    ok(room.chair("poll.open", {"poll": "vote"}))
    refused(room.chair("poll.open", {"poll": "vote"}), "poll_is_open")
    refused(room.chair("poll.publish", {"poll": "vote"}), "poll_is_open")
    refused(room.chair("poll.update", {"poll": "vote", "def": QUICK}), "poll_is_open")
    ok(room.chair("poll.close", {"poll": "vote"}))
    refused(room.chair("poll.close", {"poll": "vote"}), "poll_is_closed")
    refused(room.chair("poll.open", {"poll": "vote"}), "poll_is_closed")
    ok(room.chair("poll.publish", {"poll": "vote"}))
    refused(room.chair("poll.publish", {"poll": "vote"}), "poll_is_published")
    assert room.poll("vote")["state"] == "published"
    refused(room.chair("poll.open", {"poll": "nope"}), "unknown_poll")


def test_participant_may_not_run_a_poll() -> None:
    room = formal_room(1)
    before = fold.digest({k: v for k, v in room.state.items() if k != "meta"})
    for cmd in ("poll.open", "poll.close", "poll.publish", "poll.timer", "poll.delete"):
        out = room.do("rep0", cmd, {"poll": "vote", "seconds": 5})
        refused(out, "forbidden")
    refused(room.do("rep0", "poll.create", {"def": QUICK}), "forbidden")
    refused(room.do("rep0", "ballot.deposit", {"poll": "vote", "ballots": []}), "forbidden")
    assert room.poll("vote")["state"] == "draft"
    state = {k: v for k, v in room.state.items() if k != "meta"}
    assert fold.digest(state) == before


def test_live_builder_creates_updates_deletes_drafts() -> None:
    room = formal_room(1)
    refused(room.chair("poll.create", {"def": {"question": "Q", "kind": "single"}}), "bad_args")
    refused(room.chair("poll.create", {"def": {**QUICK, "colour": "red"}}), "bad_args")
    room2 = formal_room(1)
    definition = {k: v for k, v in QUICK.items() if k != "id"}
    out = ok(room2.chair("poll.create", {"def": definition}))
    poll_id = out[0]["poll"]["id"]
    assert poll_id == "p1" and out[0]["to"] == ["role:moderator"]
    ok(
        room2.chair(
            "poll.update",
            {"poll": poll_id, "def": {**definition, "kind": "yesno", "options": None}},
        )
    )
    assert room2.poll(poll_id)["kind"] == "yesno"
    ok(room2.chair("poll.delete", {"poll": poll_id}))
    assert poll_id not in room2.state["polls"]["polls"]
    second = ok(room2.chair("poll.create", {"def": definition}))
    assert second[0]["poll"]["id"] == "p2"


def test_timer_closes_and_late_ballots_are_refused() -> None:
    room = Room(room_config(polls=[QUICK]))
    room.join("chair", "moderator")
    room.join("ann")
    room.join("bob")
    ok(room.chair("poll.open", {"poll": "quick", "seconds": 30}, ts=10_000))
    assert fold.next_deadline(room.state) == 40_000
    ok(room.do("ann", "ballot.cast", {"poll": "quick", "choice": "a"}, ts=20_000))
    # After the deadline but before the tick: decide compares with the entry's time.
    refused(
        room.do("bob", "ballot.cast", {"poll": "quick", "choice": "b"}, ts=40_001), "poll_is_closed"
    )
    events = ok(room.system("tick", {}, ts=40_010))
    assert [e["type"] for e in events][:2] == ["poll.closed", "poll.sealed"]
    poll = room.poll("quick")
    assert poll["state"] == "closed" and poll["closed_at"] == 40_000
    assert room.result("quick")["ballots"] == 1
    refused(room.do("bob", "ballot.cast", {"poll": "quick", "choice": "b"}), "poll_is_closed")


def test_timer_can_be_set_and_cleared_while_open() -> None:
    room = Room(room_config(polls=[QUICK]))
    room.join("chair", "moderator")
    refused(room.chair("poll.timer", {"poll": "quick", "seconds": 10}), "poll_is_draft")
    ok(room.chair("poll.open", {"poll": "quick"}, ts=1000))
    assert room.poll("quick")["closes_at"] is None
    ok(room.chair("poll.timer", {"poll": "quick", "seconds": 10}, ts=2000))
    assert room.poll("quick")["closes_at"] == 12_000
    ok(room.chair("poll.timer", {"poll": "quick", "seconds": 0}, ts=3000))
    assert room.poll("quick")["closes_at"] is None and fold.next_deadline(room.state) is None


# --- quick polls ----------------------------------------------------------------------------------


def test_quick_poll_one_ballot_per_present_participant() -> None:
    room = Room(room_config(polls=[QUICK]))
    room.join("chair", "moderator")
    for p in ("ann", "bob", "cem"):
        room.join(p)
    room.join("ivy", "interpreter")
    refused(room.do("ann", "ballot.cast", {"poll": "quick", "choice": ["a"]}), "poll_is_draft")
    ok(room.chair("poll.open", {"poll": "quick"}))
    ok(room.do("ann", "ballot.cast", {"poll": "quick", "choice": ["a"]}))
    refused(room.do("ann", "ballot.cast", {"poll": "quick", "choice": ["b"]}), "already_voted")
    ok(room.do("bob", "ballot.cast", {"poll": "quick", "choice": "a"}))
    refused(room.do("cem", "ballot.cast", {"poll": "quick", "choice": "z"}), "unknown_option")
    refused(
        room.do("cem", "ballot.cast", {"poll": "quick", "choice": ["a", "b"]}), "too_many_choices"
    )
    refused(room.do("cem", "ballot.cast", {"poll": "quick", "choice": []}), "no_choice")
    refused(
        room.do("ivy", "ballot.cast", {"poll": "quick", "choice": "a"}, role="interpreter"),
        "forbidden",
    )
    refused(room.do("ghost", "ballot.cast", {"poll": "quick", "choice": "a"}), "not_present")
    refused(room.chair("ballot.cast", {"poll": "quick", "choice": "a"}), "forbidden")
    ok(room.chair("poll.close", {"poll": "quick"}))
    result = room.result("quick")
    assert result["ballots"] == 2 and result["options"][0] == {"id": "a", "n": 2, "w": 200}
    assert result["outcome"] == "carried" and result["winner"] == "a"
    assert result["eligible"]["n"] == 3


def test_change_until_close_only_by_the_same_voter() -> None:
    room = Room(room_config(polls=[{**QUICK, "change": True, "kind": "multiple", "max": 2}]))
    room.join("chair", "moderator")
    room.join("ann")
    ok(room.chair("poll.open", {"poll": "quick"}))
    ok(room.do("ann", "ballot.cast", {"poll": "quick", "choice": ["a", "b"]}))
    events = ok(room.do("ann", "ballot.cast", {"poll": "quick", "choice": ["c"]}))
    assert events[0]["type"] == "ballot.changed"
    assert ok(room.do("ann", "ballot.cast", {"poll": "quick", "choice": ["c"]})) == []
    counts = room.poll("quick")["counts"]
    assert counts == {"a": [0, 0], "b": [0, 0], "c": [1, 100]}
    assert room.poll("quick")["cast"] == [1, 100]
    ok(room.chair("poll.close", {"poll": "quick"}))
    refused(room.do("ann", "ballot.cast", {"poll": "quick", "choice": ["a"]}), "poll_is_closed")
    # A multiple-choice poll publishes the list, even of one option.
    assert [r["choice"] for r in room.result("quick")["roll_call"]] == [["c"]]


# --- formal votes, weights and proxies ----------------------------------------------------------


def test_formal_vote_one_ballot_per_member_whichever_representative() -> None:
    room = formal_room(1, 2.5, 1)
    room.join("rep1b", org="m1")
    room.join("stranger", org="not-a-member")
    ok(room.chair("poll.open", {"poll": "vote"}))
    ok(room.do("rep1b", "ballot.cast", {"poll": "vote", "choice": "yes"}))
    out = room.do("rep1", "ballot.cast", {"poll": "vote", "choice": "no"})
    refused(out, "already_voted")
    assert "Member 1 has already voted" in out.error["message"]  # type: ignore[index]
    refused(room.do("stranger", "ballot.cast", {"poll": "vote", "choice": "no"}), "not_on_roll")
    ok(room.do("rep0", "ballot.cast", {"poll": "vote", "choice": "no"}))
    ok(room.chair("poll.close", {"poll": "vote"}))
    result = room.result("vote")
    assert result["options"][:2] == [
        {"id": "yes", "n": 1, "w": 250},
        {"id": "no", "n": 1, "w": 100},
    ]
    assert result["quorum"]["met"] and result["outcome"] == "adopted"
    assert [r["voter"] for r in result["roll_call"]] == ["m0", "m1"]
    # A yes/no poll takes one option: the published choice is that option's id.
    assert [(r["choice"], r["w"]) for r in result["roll_call"]] == [("no", 100), ("yes", 250)]


def test_a_published_result_reaches_everyone_without_the_roll_call_which_the_chair_keeps() -> None:
    """``poll.published`` goes to every page: it carries the tally, not a line per voter
    (O(voters) per page, ~20 s for 5,000 pages). The chair has the roll call from
    ``poll.sealed``; the state and so the exports keep it."""
    room = formal_room(1, 2.5, 1)
    ok(room.chair("poll.open", {"poll": "vote"}))
    for i, choice in enumerate(("yes", "no", "yes")):
        ok(room.do(f"rep{i}", "ballot.cast", {"poll": "vote", "choice": choice}))
    sealed = [
        e for e in ok(room.chair("poll.close", {"poll": "vote"})) if e["type"] == "poll.sealed"
    ]
    assert [r["voter"] for r in sealed[0]["result"]["roll_call"]] == ["m0", "m1", "m2"]
    (published,) = ok(room.chair("poll.publish", {"poll": "vote"}))
    assert "roll_call" not in published["result"]
    whole = room.result("vote")
    assert {k: v for k, v in whole.items() if k != "roll_call"} == published["result"]
    assert len(whole["roll_call"]) == 3, "the state (the exports) keeps the roll call"
    rep = {"pid": "rep0", "role": "participant", "org": "m0"}
    seen = fold.view(room.state, rep)["polls"]["polls"]["vote"]["result"]
    assert seen == published["result"], "a voter's welcome holds what the event said"
    chair = fold.view(room.state, {"pid": "chair", "role": "moderator"})
    assert chair["polls"]["polls"]["vote"]["result"] == whole
    # A voter's copy folds the event from no result; the chair's from the sealed one.
    voter_copy: dict[str, Any] = {"id": "vote"}
    chair_copy: dict[str, Any] = {"id": "vote", "result": sealed[0]["result"]}
    for copy_ in (voter_copy, chair_copy):
        state: Any = {"polls": {"polls": {"vote": copy_}}}
        fold.RULES.apply_events(state, [published])
    assert voter_copy["result"] == published["result"]
    assert chair_copy["result"] == whole


def test_proxy_casts_for_the_delegating_member() -> None:
    room = formal_room(1, 1, 1, 1)
    ok(room.do("rep0", "proxy.grant", {"to": "m1"}))
    refused(room.do("rep2", "proxy.grant", {"to": "m0"}), "proxy_chain")  # m0 delegated
    refused(room.do("rep1", "proxy.grant", {"to": "m2"}), "proxy_chain")  # m1 holds one
    refused(room.do("rep2", "proxy.grant", {"to": "m2"}), "bad_proxy")
    refused(room.do("rep2", "proxy.grant", {"to": "m9"}), "not_on_roll")
    refused(room.do("rep2", "proxy.grant", {"to": "m1", "from": "m3"}), "forbidden")
    ok(room.chair("poll.open", {"poll": "vote"}))
    refused(room.do("rep0", "proxy.revoke", {}), "poll_is_open")
    refused(room.do("rep0", "ballot.cast", {"poll": "vote", "choice": "yes"}), "delegated")
    refused(
        room.do("rep2", "ballot.cast", {"poll": "vote", "choice": "yes", "for": "m0"}), "no_proxy"
    )
    ok(room.do("rep1", "ballot.cast", {"poll": "vote", "choice": "yes", "for": "m0"}))
    refused(
        room.do("rep1", "ballot.cast", {"poll": "vote", "choice": "no", "for": "m0"}),
        "already_voted",
    )
    ok(room.do("rep1", "ballot.cast", {"poll": "vote", "choice": "no"}))
    ok(room.chair("poll.close", {"poll": "vote"}))
    voted = room.poll("vote")["voted"]
    assert set(voted) == {"m0", "m1"} and voted["m0"]["by"] == "rep1"


def test_revoked_proxy_cannot_vote_and_the_member_votes_again_itself() -> None:
    room = formal_room(1, 1)
    ok(room.do("rep0", "proxy.grant", {"to": "m1"}))
    ok(room.do("rep0", "proxy.revoke", {}))
    refused(room.do("rep0", "proxy.revoke", {}), "no_proxy")
    ok(room.chair("poll.open", {"poll": "vote"}))
    before = room.poll("vote")["cast"][:]
    refused(
        room.do("rep1", "ballot.cast", {"poll": "vote", "choice": "yes", "for": "m0"}), "no_proxy"
    )
    assert room.poll("vote")["cast"] == before
    ok(room.do("rep0", "ballot.cast", {"poll": "vote", "choice": "no"}))


def test_proxy_chains_and_limits_when_the_config_allows() -> None:
    room = formal_room(1, 1, 1, 1, proxy_chains=True, max_proxies=2)
    ok(room.do("rep0", "proxy.grant", {"to": "m1"}))
    ok(room.do("rep1", "proxy.grant", {"to": "m2"}))
    refused(room.do("rep2", "proxy.grant", {"to": "m0"}), "proxy_cycle")
    refused(room.do("rep3", "proxy.grant", {"to": "m2"}), "too_many_proxies")
    # The chain ends at m2, which already holds two votes besides its own.
    refused(room.chair("proxy.grant", {"from": "m3", "to": "m0"}), "too_many_proxies")
    refused(room.chair("proxy.grant", {"to": "m0"}), "bad_args")
    ok(room.chair("poll.open", {"poll": "vote"}))
    ok(room.do("rep2", "ballot.cast", {"poll": "vote", "choice": "yes", "for": "m0"}))
    ok(room.do("rep2", "ballot.cast", {"poll": "vote", "choice": "yes", "for": "m1"}))
    refused(room.do("rep1", "ballot.cast", {"poll": "vote", "choice": "no"}), "delegated")


def test_proxies_are_frozen_when_a_vote_opens() -> None:
    room = formal_room(1, 1, poll={**FORMAL, "id": "vote"})
    ok(room.do("rep0", "proxy.grant", {"to": "m1"}))
    ok(room.chair("poll.open", {"poll": "vote"}))
    assert room.poll("vote")["proxies"] == {"m0": "m1"}


# --- thresholds and quorum -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule, abstentions, yes, no, abstain, outcome",
    [
        ("simple", "excluded", 3, 2, 5, "adopted"),
        ("simple", "counted", 3, 2, 5, "rejected"),
        ("simple", "excluded", 2, 2, 0, "rejected"),
        ("two_thirds", "excluded", 4, 2, 0, "adopted"),
        ("two_thirds", "excluded", 3, 2, 0, "rejected"),
        ("absolute", "excluded", 5, 0, 0, "rejected"),  # 5 of 10 members is not more than half
        ("absolute", "excluded", 6, 0, 0, "adopted"),
    ],
)
def test_thresholds(
    rule: str, abstentions: str, yes: int, no: int, abstain: int, outcome: str
) -> None:
    poll = {**FORMAL, "threshold": {"rule": rule, "abstentions": abstentions}, "quorum": None}
    room = formal_room(*[1] * 10, poll=poll)
    ok(room.chair("poll.open", {"poll": "vote"}))
    choices = ["yes"] * yes + ["no"] * no + ["abstain"] * abstain
    for i, choice in enumerate(choices):
        ok(room.do(f"rep{i}", "ballot.cast", {"poll": "vote", "choice": choice}))
    ok(room.chair("poll.close", {"poll": "vote"}))
    assert room.result("vote")["outcome"] == outcome, room.result("vote")["threshold"]


def test_quorum_counts_abstentions_and_records_when_missed() -> None:
    room = formal_room(1, 1, 1, 1, 1)
    ok(room.chair("poll.open", {"poll": "vote"}))
    ok(room.do("rep0", "ballot.cast", {"poll": "vote", "choice": "yes"}))
    ok(room.do("rep1", "ballot.cast", {"poll": "vote", "choice": "abstain"}))
    ok(room.chair("poll.close", {"poll": "vote"}))
    result = room.result("vote")
    assert result["quorum"] == {
        "of": "roll",
        "fraction": "1/2",
        "weighted": False,
        "required": "5/2",
        "have": 2,
        "met": False,
    }
    assert result["outcome"] == "no_quorum" and result["winner"] is None


def test_chair_sees_live_progress_only_chair() -> None:
    room = formal_room(1, 1)
    ok(room.chair("poll.open", {"poll": "vote"}))
    events = ok(room.do("rep0", "ballot.cast", {"poll": "vote", "choice": "yes"}))
    progress = [e for e in events if e["type"] == "poll.progress"]
    assert progress and progress[0]["to"] == ["role:moderator"]
    assert progress[0]["progress"]["turnout"] == {"n": 1, "w": 100}
    cast = [e for e in events if e["type"] == "ballot.cast"][0]
    assert cast["to"] == ["role:moderator", "pid:rep0"]
    view = fold.view(room.state, {"pid": "rep1", "role": "participant", "org": "m1"})
    assert "counts" not in view["polls"]["polls"]["vote"]
    assert view["polls"]["polls"]["vote"]["voted"] == {}
    mine = fold.view(room.state, {"pid": "rep0", "role": "participant", "org": "m0"})
    assert set(mine["polls"]["polls"]["vote"]["voted"]) == {"m0"}


def test_drafts_are_hidden_from_participants_and_results_until_published() -> None:
    room = formal_room(1)
    person = {"pid": "rep0", "role": "participant", "org": "m0"}
    assert fold.view(room.state, person)["polls"]["order"] == []
    ok(room.chair("poll.open", {"poll": "vote"}))
    ok(room.do("rep0", "ballot.cast", {"poll": "vote", "choice": "yes"}))
    ok(room.chair("poll.close", {"poll": "vote"}))
    assert "result" not in fold.view(room.state, person)["polls"]["polls"]["vote"]
    ok(room.chair("poll.publish", {"poll": "vote"}))
    shown = fold.view(room.state, person)["polls"]["polls"]["vote"]
    assert shown["result"]["outcome"] == "adopted"


def test_a_voters_copy_ends_like_their_view() -> None:
    """A voter sees polls from their opening, in that order, sealed once published, no seq."""
    room = Room(room_config(roll(1, 1), polls=[FORMAL, QUICK]))
    for pid, org in (("rep0", "m0"), ("rep1", "m1")):
        room.join(pid, org=org)
    person = {"pid": "rep0", "role": "participant", "org": "m0"}
    copy_ = fold.view(room.state, person)
    events: list[dict[str, Any]] = []
    events += ok(room.chair("poll.create", {"def": QUICK}))
    events += ok(room.chair("poll.open", {"poll": "p1"}))
    events += ok(room.chair("poll.open", {"poll": "quick"}))
    events += ok(room.chair("poll.open", {"poll": "vote"}))
    events += ok(room.do("rep0", "ballot.cast", {"poll": "quick", "choice": "a"}))
    events += ok(room.chair("poll.close", {"poll": "quick"}))
    events += ok(room.chair("poll.close", {"poll": "vote"}))
    events += ok(room.chair("poll.publish", {"poll": "vote"}))
    fold.apply_events(copy_, [e for e in events if fold.visible(e, person)])
    view = fold.view(room.state, person)
    assert copy_["polls"] == view["polls"]
    assert view["polls"]["order"] == ["p1", "quick", "vote"] and "seq" not in view["polls"]
    shown = view["polls"]["polls"]
    assert shown["quick"]["sealed"] is False and room.poll("quick")["sealed"] is True
    assert shown["vote"]["sealed"] is True
    chair = fold.view(room.state, {"pid": "chair", "role": "moderator"})["polls"]
    assert chair["order"] == ["vote", "quick", "p1"] and chair["seq"] == 1


# --- secret ballots ------------------------------------------------------------------------------


def secret_room(*weights: float, **poll: Any) -> Room:
    room = formal_room(*weights, poll={**FORMAL, "secret": True, **poll})
    room.give_keys("vote")
    ok(room.chair("poll.open", {"poll": "vote"}))
    return room


def device(room: Room, weight: int = 100) -> Device:
    return Device("hall", "vote", weight, key_for("hall", "vote", weight).public)


def claim_and_sign(room: Room, rep: str, member: str, weight: int = 100, **extra: Any) -> Device:
    d = device(room, weight)
    ok(room.do(rep, "ballot.claim", {"poll": "vote", "blinded": d.blinded(), **extra}))
    d.take(room.sign("vote", member, weight))
    return d


CHAIR = {"pid": "chair", "role": "moderator"}


def test_secret_ballot_counts_once_and_no_choice_before_the_close() -> None:
    room = secret_room(1, 2, 1, 1)
    devices = [
        claim_and_sign(room, "rep0", "m0"),
        claim_and_sign(room, "rep1", "m1", 200),
        claim_and_sign(room, "rep2", "m2"),
    ]
    assert room.poll("vote")["pending"] == {"100": 2, "200": 1}
    sealed = [d.sealed([c]) for d, c in zip(devices, ["yes", "no", "yes"], strict=True)]
    events: list[dict[str, Any]] = []
    for s in sealed:
        events += ok(room.deposit("vote", s))
    # Re-sent, the same sealed ballot is counted once: under the same cid (the node's
    # retry) the fold ignores the entry, under another (a second node) the decide does.
    assert ok(room.deposit("vote", sealed[0])) == []
    assert ok(room.system("ballot.deposit", {"poll": "vote", "sealed": sealed[0]})) == []
    poll = room.poll("vote")
    assert sorted(poll["ballots"]) == sorted(blind.tracker(s) for s in sealed)
    # No choice anywhere before the close: the state holds sealed bytes, no count moves,
    # the deposits' events go to no one and carry no choice.
    assert poll["counts"] == {"yes": [0, 0], "no": [0, 0], "abstain": [0, 0]}
    for event in events:
        assert event["type"] == "ballot.deposited" and event["to"] == []
        assert set(event) == {"type", "id", "tracker", "sealed", "late", "to"}
    ok(room.chair("poll.close", {"poll": "vote"}))
    assert not room.poll("vote")["sealed"]
    refused(room.chair("poll.publish", {"poll": "vote"}), "ballots_pending")
    events = ok(room.reveal("vote"))
    assert [e["type"] for e in events] == ["poll.sealed"]
    result = room.result("vote")
    assert result["trackers"] == sorted(blind.tracker(s) for s in sealed)
    assert result["revealed"] == [
        {"choice": "no", "w": 200},
        {"choice": "yes", "w": 100},
        {"choice": "yes", "w": 100},
    ]
    assert result["counted"] == 3 and result["invalid"] == 0 and result["missing"] == 0
    assert {o["id"]: o["w"] for o in result["options"]} == {"yes": 200, "no": 200, "abstain": 0}
    assert "roll_call" not in result
    # The published result holds no token, signature or blinded value: nothing a voter
    # could point at to show their choice.
    text = repr(result)
    for d in devices:
        assert d.token not in text and format(d.signature, "x") not in text
    for record in poll["voted"].values():
        assert set(record) == {"by", "at", "w", "blinded"}
    # A second node's reveal (another cid) changes nothing.
    assert ok(room.reveal("vote", cid="reveal-again")) == []
    ok(room.chair("poll.publish", {"poll": "vote"}))


def test_the_chair_sees_turnout_only_during_a_secret_vote() -> None:
    room = secret_room(1, 1, 1)
    seen: list[dict[str, Any]] = []
    for i, choice in enumerate(["yes", "no", "yes"]):
        d = device(room)
        out = ok(room.do(f"rep{i}", "ballot.claim", {"poll": "vote", "blinded": d.blinded()}))
        d.take(room.sign("vote", f"m{i}", 100))
        out += ok(room.deposit("vote", d.sealed([choice])))
        seen += [e for e in out if fold.visible(e, CHAIR)]
    assert [e["type"] for e in seen] == ["poll.progress"]  # throttled: one so far
    progress = seen[0]["progress"]
    assert progress["outcome"] == "secret" and progress["winner"] is None
    assert all(o["n"] == 0 and o["w"] == 0 for o in progress["options"])
    late = ok(room.system("tick", {}, ts=room.ts + 1_000))
    assert late[0]["progress"]["turnout"] == {"n": 3, "w": 300}
    view = fold.view(room.state, CHAIR)["polls"]["polls"]["vote"]
    text = repr(view)
    assert "blinded" not in text and "ballots" not in view
    for b in room.poll("vote")["ballots"].values():
        assert b["sealed"] not in text
    assert view["voted"] == {} and view["counts"] == {
        "yes": [0, 0],
        "no": [0, 0],
        "abstain": [0, 0],
    }


def test_secret_claim_refusals_and_idempotent_claim() -> None:
    room = secret_room(1, 1)
    d = device(room)
    events = ok(room.do("rep0", "ballot.claim", {"poll": "vote", "blinded": d.blinded()}))
    assert events[0]["type"] == "ballot.claimed" and events[0]["to"] == ["pid:rep0"]
    assert ok(room.do("rep0", "ballot.claim", {"poll": "vote", "blinded": d.blinded()})) == []
    other = device(room)
    refused(
        room.do("rep0", "ballot.claim", {"poll": "vote", "blinded": other.blinded()}),
        "already_voted",
    )
    refused(room.do("rep1", "ballot.cast", {"poll": "vote", "choice": "yes"}), "secret_ballot")
    refused(room.do("rep1", "ballot.claim", {"poll": "vote", "blinded": "XYZ"}), "bad_args")
    assert room.poll("vote")["pending"] == {"100": 1}


def test_deposits_need_claims_and_bad_sealed_ballots_are_refused() -> None:
    room = secret_room(1, 1, 1)
    refused(room.system("ballot.deposit", {"poll": "vote", "sealed": "ab" * 100}), "no_claim")
    refused(room.system("ballot.deposit", {"poll": "vote", "sealed": "XY"}), "bad_args")
    refused(room.system("ballot.deposit", {"poll": "vote", "sealed": "abc"}), "bad_args")
    refused(room.system("ballot.deposit", {"poll": "vote", "sealed": "ab" * 5000}), "bad_args")
    refused(room.do("rep0", "ballot.deposit", {"poll": "vote", "sealed": "ab"}), "forbidden")
    d = claim_and_sign(room, "rep0", "m0")
    # One claim: at most SEALED_PER_CLAIM sealed ballots (a first one and its changes, or a
    # device that lost its sealed text and sealed again); what they hold counts at the reveal.
    from server.polls import SEALED_PER_CLAIM

    for _ in range(SEALED_PER_CLAIM):
        ok(room.deposit("vote", d.sealed(["yes"])))
    refused(room.deposit("vote", d.sealed(["yes"])), "no_claim")
    assert len(room.poll("vote")["ballots"]) == SEALED_PER_CLAIM


def test_forged_unreadable_or_surplus_ballots_are_counted_invalid() -> None:
    room = secret_room(1, 1, 1, 1, 1, 1, change=True)
    good = [claim_and_sign(room, f"rep{i}", f"m{i}") for i in range(3)]
    for d, c in zip(good, ["yes", "no", "yes"], strict=True):
        ok(room.deposit("vote", d.sealed([c])))
    forged = device(room)
    forged.signature = 12345
    extra = device(room)  # a valid-looking token without a claim of its own
    extra.signature = key_for("hall", "vote", 100).sign(blind.fdh(extra.key, extra.message))
    bad = [
        forged.sealed(["yes"]),
        {**good[0].ballot(["no"]), "w": 200},
        good[1].ballot(["maybe"]),
        "ab" * 200,  # not sealed to this poll's key
        extra.sealed(["yes"]),  # only the signing key's holder could make it: one too many
    ]
    from server import seal
    from tests.polls_helpers import seal_key_for

    public = seal.public_hex(seal_key_for("hall", "vote"))
    for item in bad:
        sealed = item if isinstance(item, str) else seal.seal(public, "hall", "vote", item)
        ok(room.deposit("vote", sealed))
    ok(room.chair("poll.close", {"poll": "vote"}))
    ok(room.reveal("vote"))
    result = room.result("vote")
    # Four tokens of weight 1 for three claims: one is dropped (which one, the token order
    # decides: a surplus token means the signing key was misused, and the count says so).
    assert result["counted"] == 3 and result["invalid"] == 5 and len(result["revealed"]) == 3
    assert len(result["trackers"]) == 8
    # A reveal that did not open every sealed ballot the poll holds is refused.
    room2 = secret_room(1, 1, 1)
    d = claim_and_sign(room2, "rep0", "m0")
    ok(room2.deposit("vote", d.sealed(["yes"])))
    ok(room2.chair("poll.close", {"poll": "vote"}))
    stale = {"poll": "vote", "ballots": [], "opened": 0}
    refused(room2.system("ballot.reveal", stale), "stale_reveal")
    refused(room2.do("rep0", "ballot.reveal", stale), "forbidden")


def test_secret_change_needs_the_next_link_of_the_chain() -> None:
    room = secret_room(1, 1, 1, change=True)
    devices = [claim_and_sign(room, f"rep{i}", f"m{i}") for i in range(3)]
    d = devices[0]
    ok(room.deposit("vote", d.sealed(["yes"])))
    ok(room.deposit("vote", d.sealed(["no"], rev=1)))
    forged = {**d.ballot(["abstain"], rev=2), "reveal": "ab" * 32}
    from server import seal
    from tests.polls_helpers import seal_key_for

    public = seal.public_hex(seal_key_for("hall", "vote"))
    ok(room.deposit("vote", seal.seal(public, "hall", "vote", forged)))
    ok(room.deposit("vote", devices[1].sealed(["yes"])))
    ok(room.deposit("vote", devices[2].sealed(["yes"])))
    ok(room.chair("poll.close", {"poll": "vote"}))
    # After the close a change is not taken (it is sealed, so the reveal drops it: late).
    ok(room.deposit("vote", devices[1].sealed(["no"], rev=1)))
    ok(room.reveal("vote"))
    result = room.result("vote")
    assert sorted(r["choice"] for r in result["revealed"]) == ["no", "yes", "yes"]
    assert result["invalid"] == 1 and result["late"] == 1 and result["counted"] == 3


def test_two_different_ballots_under_one_revision_count_neither() -> None:
    room = secret_room(1, 1, 1, 1, change=True)
    devices = [claim_and_sign(room, f"rep{i}", f"m{i}") for i in range(4)]
    for d in devices:
        ok(room.deposit("vote", d.sealed(["yes"])))
    ok(room.deposit("vote", devices[0].sealed(["no"])))  # rev 0 again, another choice
    ok(room.chair("poll.close", {"poll": "vote"}))
    ok(room.reveal("vote"))
    result = room.result("vote")
    assert result["counted"] == 3 and result["invalid"] == 2 and result["missing"] == 1


def test_fewer_ballots_than_the_minimum_reveal_nothing() -> None:
    room = secret_room(1, 1, 1, 1, mix=3)
    for i in range(2):
        d = claim_and_sign(room, f"rep{i}", f"m{i}")
        ok(room.deposit("vote", d.sealed(["yes"])))
    ok(room.chair("poll.close", {"poll": "vote"}))
    ok(room.reveal("vote"))
    result = room.result("vote")
    assert result["outcome"] == "too_few" and result["winner"] is None
    assert result["revealed"] == [] and result["mix"] == 3 and result["counted"] == 2
    assert all(o["n"] == 0 for o in result["options"])
    assert len(result["trackers"]) == 2  # each voter still finds their sealed ballot


def test_a_live_secret_vote_with_a_lone_weight_is_refused_naming_the_member() -> None:
    room = formal_room(1, 2, 1)
    out = room.chair("poll.create", {"def": {**FORMAL, "secret": True}})
    refused(out, "lone_weight")
    assert out.error is not None and "'m1' (Member 1)" in out.error["message"]
    ok(room.chair("poll.create", {"def": FORMAL}))  # openly, it may be held
    refused(
        room.chair("poll.update", {"poll": "p1", "def": {**FORMAL, "secret": True}}), "lone_weight"
    )
    paired = formal_room(1, 2, 1, 2)
    ok(paired.chair("poll.create", {"def": {**FORMAL, "secret": True}}))


def test_a_secret_result_exports_trackers_and_ballots_apart_in_every_language() -> None:
    from types import SimpleNamespace

    from server.web.results import poll_csv, poll_export

    for n, outcome in ((2, "too_few"), (3, "no_quorum")):
        room = secret_room(1, 1, 1, 1, 1, 1, 1)
        for i in range(n):
            d = claim_and_sign(room, f"rep{i}", f"m{i}")
            ok(room.deposit("vote", d.sealed(["yes"])))
        ok(room.chair("poll.close", {"poll": "vote"}))
        ok(room.reveal("vote"))
        hub = SimpleNamespace(state=room.state)
        node = SimpleNamespace(hubs={"hall": hub}, assembly=SimpleNamespace(name="Assembly"))
        texts = set()
        for lang in ("en", "es", "fr", "ru"):
            data = poll_export(node, "hall", "vote", lang)  # type: ignore[arg-type]
            assert data["outcome"] == outcome and data["outcome_text"]
            texts.add(data["outcome_text"])
            text = poll_csv(data)
            assert "\ntracker\n" in text and all(t in text for t in data["trackers"])
            assert "\nchoice,choice_text,w\n" in text
            ballots = text.split("\nchoice,choice_text,w\n")[1]
            assert ballots.count("yes,") == (0 if outcome == "too_few" else n)
        assert len(texts) == 4


@pytest.mark.parametrize("mix", [1, 2])
def test_a_secret_poll_mixes_at_least_three(mix: int) -> None:
    room = formal_room(1, 1, 1)
    out = room.chair("poll.create", {"def": {**FORMAL, "secret": True, "mix": mix}})
    refused(out, "bad_args")
    assert out.error is not None and "at least 3" in out.error["message"]


def test_a_closed_secret_poll_waits_for_its_reveal() -> None:
    room = secret_room(1, 1, 1)
    claim_and_sign(room, "rep0", "m0")
    ok(room.chair("poll.close", {"poll": "vote"}, ts=50_000))
    # The fold never seals a secret poll by itself: a node reveals after the grace.
    assert fold.next_deadline(room.state) in (None, 50_000 + 250)
    ok(room.system("tick", {}, ts=50_000 + GRACE_MS))
    assert not room.poll("vote")["sealed"]
    ok(room.reveal("vote"))
    result = room.result("vote")
    assert result["missing"] == 1 and result["turnout"]["n"] == 1 and result["outcome"] == "too_few"


# --- properties -------------------------------------------------------------------------------


@st.composite
def electorates(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 7))
    weights = draw(st.lists(st.sampled_from([0.5, 1, 1.25, 2, 3]), min_size=n, max_size=n))
    proxies: dict[int, int] = {}
    for i in range(n):
        j = draw(st.integers(-1, n - 1))
        if j >= 0 and j != i and j not in proxies and i not in proxies.values():
            proxies[i] = j
    attempts = draw(
        st.lists(
            st.tuples(
                st.integers(0, n + 1),  # representative (n, n+1: not on roll)
                st.one_of(st.none(), st.integers(0, n - 1)),  # casting for (proxy)
                st.sampled_from(["yes", "no", "abstain", "maybe"]),
            ),
            max_size=25,
        )
    )
    return {"weights": weights, "proxies": proxies, "attempts": attempts}


def run_formal(case: dict[str, Any], order: list[int] | None = None) -> Room:
    weights = case["weights"]
    room = Room(room_config(roll(*weights), [{**FORMAL, "quorum": None}]))
    room.join("chair", "moderator")
    for i in range(len(weights) + 2):
        room.join(f"rep{i}", org=f"m{i}")
    for i, j in case["proxies"].items():
        assert room.do(f"rep{i}", "proxy.grant", {"to": f"m{j}"}).error is None
    ok(room.chair("poll.open", {"poll": "vote"}))
    attempts = case["attempts"]
    for k in order if order is not None else range(len(attempts)):
        rep, on_behalf, choice = attempts[k]
        args: dict[str, Any] = {"poll": "vote", "choice": choice}
        if on_behalf is not None:
            args["for"] = f"m{on_behalf}"
        room.do(f"rep{rep}", "ballot.cast", args)
    ok(room.chair("poll.close", {"poll": "vote"}))
    return room


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(electorates())
def test_weighted_total_is_the_sum_over_distinct_eligible_ballots(case: dict[str, Any]) -> None:
    room = run_formal(case)
    weights, proxies = case["weights"], case["proxies"]
    # An independent model: the first valid attempt for each member counts.
    counted: dict[int, tuple[str, int]] = {}
    for rep, on_behalf, choice in case["attempts"]:
        if rep >= len(weights) or choice == "maybe":
            continue
        member = rep if on_behalf is None else on_behalf
        holder = proxies.get(member, member)
        if holder != rep or member in counted:
            continue
        counted[member] = (choice, round(weights[member] * 100))
    result = room.result("vote")
    assert result["weight"] == sum(w for _, w in counted.values())
    assert result["ballots"] == len(counted)
    for option in result["options"]:
        assert option["w"] == sum(w for c, w in counted.values() if c == option["id"])
    # Proxies never give a member two ballots, nor a member a ballot it delegated away.
    voted = room.poll("vote")["voted"]
    assert len(voted) == len(counted)
    for member, record in voted.items():
        i = int(member[1:])
        assert record["by"] == f"rep{proxies.get(i, i)}"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(electorates(), st.randoms(use_true_random=False))
def test_result_does_not_depend_on_arrival_order(case: dict[str, Any], rnd: random.Random) -> None:
    # Distinct voters only: for one voter, which attempt came first is the arrival order.
    seen: set[int] = set()
    attempts = []
    for a in case["attempts"]:
        member = a[0] if a[1] is None else a[1]
        if member not in seen:
            seen.add(member)
            attempts.append(a)
    case = {**case, "attempts": attempts}
    order = list(range(len(attempts)))
    rnd.shuffle(order)
    first = run_formal(case).result("vote")
    second = run_formal(case, order).result("vote")
    drop = ("opened_at", "closed_at", "sealed_at", "roll_call")
    assert {k: v for k, v in first.items() if k not in drop} == {
        k: v for k, v in second.items() if k not in drop
    }

    def calls(result: dict[str, Any]) -> list[tuple[str, str, str | list[str], int]]:
        return [(r["voter"], r["by"], r["choice"], r["w"]) for r in result["roll_call"]]

    assert calls(first) == calls(second)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["yes", "no", "abstain"])), max_size=12),
    st.randoms(use_true_random=False),
)
def test_secret_deposits_any_order_and_retries_give_one_tally(
    votes: list[tuple[int, str]], rnd: random.Random
) -> None:
    weights = [1, 2, 1, 1.5, 1, 2]
    chosen: dict[int, str] = {}
    for member, choice in votes:
        chosen.setdefault(member, choice)
    results = []
    for _attempt in range(2):
        room = secret_room(*weights)
        sealed = []
        for member, choice in sorted(chosen.items()):
            w = round(weights[member] * 100)
            d = claim_and_sign(room, f"rep{member}", f"m{member}", w)
            sealed.append(d.sealed([choice]))
        sealed += sealed[: len(sealed) // 2]  # retries
        rnd.shuffle(sealed)
        for s in sealed:
            ok(room.system("ballot.deposit", {"poll": "vote", "sealed": s}))
        ok(room.chair("poll.close", {"poll": "vote"}))
        ok(room.reveal("vote"))
        result = room.result("vote")
        results.append({k: v for k, v in result.items() if k not in ("trackers", "sealed_at")})
        if len(chosen) >= 3:
            expected = {
                o: [
                    sum(1 for c in chosen.values() if c == o),
                    sum(round(weights[m] * 100) for m, c in chosen.items() if c == o),
                ]
                for o in ("yes", "no", "abstain")
            }
            assert {o["id"]: [o["n"], o["w"]] for o in result["options"]} == expected
        else:
            assert result["outcome"] == "too_few"
    assert results[0] == results[1]


def test_live_progress_is_throttled_and_the_last_one_comes_by_tick() -> None:
    from server.polls import PROGRESS_MS

    room = formal_room(1, 1, 1)
    ok(room.chair("poll.open", {"poll": "vote"}, ts=1_000))
    first = ok(room.do("rep0", "ballot.cast", {"poll": "vote", "choice": "yes"}, ts=2_000))
    assert [e["type"] for e in first][-1] == "poll.progress"
    second = ok(room.do("rep1", "ballot.cast", {"poll": "vote", "choice": "no"}, ts=2_010))
    assert [e["type"] for e in second] == ["ballot.cast"]
    assert fold.next_deadline(room.state) == 2_000 + PROGRESS_MS
    late = ok(room.system("tick", {}, ts=2_000 + PROGRESS_MS))
    assert late[0]["type"] == "poll.progress" and late[0]["progress"]["turnout"]["n"] == 2
    assert fold.next_deadline(room.state) is None
