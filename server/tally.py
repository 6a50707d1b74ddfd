"""Counting: totals per option, quorum, threshold and the outcome of one poll. Pure.

Weights are integers in hundredths (a member of weight 1.5 counts 150), so sums are exact
and every node reaches the same result whatever order the ballots came in: the counts are
plain sums, and the outcome is a function of the counts alone.

Rules (docs/voting.md has the prose):

- quorum ``{of: roll|present, fraction, weighted}``: ballots cast (counted, or weighed if
  ``weighted``) must reach ``fraction`` of the roll (or of those present at close);
  abstentions count toward the quorum.
- threshold ``simple``: the leading option has more than half of the votes cast;
  ``two_thirds``: at least two thirds of the votes cast; ``absolute``: more than half of the
  whole electorate's weight. For yes/no/abstain, ``abstentions: counted`` puts abstentions
  in the votes cast, ``excluded`` leaves them out.
"""

from __future__ import annotations

from fractions import Fraction

from .state import Amount, Poll, PollOption, QuorumResult, Result

ABSTAIN = "abstain"


def empty_counts(options: list[PollOption]) -> dict[str, list[int]]:
    return {o["id"]: [0, 0] for o in options}


def add(poll: Poll, choice: list[str], weight: int, sign: int = 1) -> None:
    """Count (``sign=1``) or uncount (``-1``) one ballot in the poll's running totals."""
    counts = poll["counts"]
    for option in choice:
        counts[option][0] += sign
        counts[option][1] += sign * weight
    poll["cast"][0] += sign
    poll["cast"][1] += sign * weight


def result(poll: Poll, eligible: tuple[int, int], present: tuple[int, int]) -> Result:
    """Totals, quorum, threshold and outcome from the poll's counts.

    ``eligible`` and ``present`` are ``(count, weight)`` of the electorate and of the part
    of it present; for a quick poll both are the participants present.
    """
    counts: dict[str, list[int]] = poll["counts"]
    cast_n, cast_w = poll["cast"]
    quorum = poll["quorum"]
    quorum_met = True
    quorum_result: QuorumResult | None = None
    if quorum is not None:
        base = eligible if quorum["of"] == "roll" else present
        index = 1 if quorum["weighted"] else 0
        required = Fraction(quorum["fraction"]) * base[index]
        have = cast_w if quorum["weighted"] else cast_n
        quorum_met = have >= required
        quorum_result = {
            "of": quorum["of"],
            "fraction": quorum["fraction"],
            "weighted": quorum["weighted"],
            "required": _num(required),
            "have": have,
            "met": quorum_met,
        }

    rule = poll["threshold"]["rule"]
    counted = poll["threshold"]["abstentions"] == "counted"
    ranked = [
        (counts[o["id"]][1], o["id"])
        for o in poll["options"]
        if not (poll["kind"] == "yesno" and o["id"] == ABSTAIN)
    ]
    if poll["kind"] == "yesno":
        lead_id: str | None = "yes"
        lead = counts["yes"][1]
        cast = counts["yes"][1] + counts["no"][1] + (counts[ABSTAIN][1] if counted else 0)
    else:
        top = max((w for w, _ in ranked), default=0)
        leaders = [oid for w, oid in ranked if w == top and w > 0]
        lead_id = leaders[0] if len(leaders) == 1 else None
        lead = top if lead_id is not None else 0
        cast = cast_w
    basis = eligible[1] if rule == "absolute" else cast
    if rule == "two_thirds":
        met = lead > 0 and 3 * lead >= 2 * basis
        need = Fraction(2 * basis, 3)
    else:
        met = 2 * lead > basis
        need = Fraction(basis, 2)
    if not quorum_met:
        outcome = "no_quorum"
    elif poll["kind"] == "yesno":
        outcome = "adopted" if met else "rejected"
    elif cast_n == 0:
        outcome = "no_votes"
    elif lead_id is None:
        outcome = "tie"
    else:
        outcome = "carried" if met else "no_majority"
    return {
        "options": [
            {"id": o["id"], "n": counts[o["id"]][0], "w": counts[o["id"]][1]}
            for o in poll["options"]
        ],
        "ballots": cast_n,
        "weight": cast_w,
        "eligible": _amount(eligible),
        "present": _amount(present),
        "quorum": quorum_result,
        "threshold": {
            "rule": rule,
            "abstentions": poll["threshold"]["abstentions"],
            "basis": basis,
            "lead": lead,
            "needed": _num(need),
            "met": met,
        },
        "outcome": outcome,
        "winner": lead_id if outcome in ("adopted", "carried") else None,
    }


def _amount(pair: tuple[int, int]) -> Amount:
    return {"n": pair[0], "w": pair[1]}


def _num(value: Fraction) -> int | str:
    return value.numerator if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
