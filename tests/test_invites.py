"""The invites slice and the representatives' check in the fold, with no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from server import fold, invites
from server.errors import Refused
from server.types import Member, RoomConfig

from . import shapes

CONFIG = RoomConfig(
    id="plenary",
    title="Plenary",
    members=(
        Member("aple-kh", "APLE", "KH", representatives=("Sokha Chan", "Dara Keo")),
        Member("open-org", "Open", "FR"),
    ),
)
NODE = {"pid": "node", "role": "system", "conn": None}
CHAIR = {"pid": "chair", "role": "moderator", "conn": "n1~c"}


class Room:
    def __init__(self) -> None:
        self.state = fold.new_state(CONFIG)
        self.n = 0

    def do(self, actor: dict[str, Any], cmd: str, args: dict[str, Any]) -> fold.Outcome:
        self.n += 1
        entry = {"cid": f"c{self.n}", "actor": actor, "cmd": cmd, "args": args, "ts": 1000 + self.n}
        outcome = fold.fold(self.state, f"{self.n}-0", entry)  # type: ignore[arg-type]
        for event in outcome.events:
            shapes.check_event(event)
        shapes.check_state(self.state)
        return outcome

    def join(self, pid: str, name: str, role: str = "participant", **claims: Any) -> fold.Outcome:
        args = {"pid": pid, "name": name, "role": role, "conn": f"n1~{pid}", **claims}
        return self.do(NODE, "join", args)

    def record(self, jti: str, **claims: Any) -> fold.Outcome:
        args = {"jti": jti, "role": "participant", "name": "Guest", "exp": 99, **claims}
        return self.do(NODE, "invite.record", args)


def test_the_fold_refuses_a_join_for_a_member_by_someone_not_its_representative() -> None:
    room = Room()
    refused = room.join("m", "Mallory", org="aple-kh")
    assert refused.error is not None and refused.error["code"] == "not_representative"
    assert "m" not in room.state["core"]["people"]
    assert room.join("s", "  SOKHA   chan ", org="aple-kh").error is None
    assert room.join("o", "Mallory", role="observer", org="aple-kh").error is None
    assert room.join("x", "Anyone", org="open-org").error is None  # no list: any name
    assert room.join("y", "Anyone", org="not-a-member").error is None  # the roll says no vote
    # The chair adds Mallory: the same join is then admitted.
    assert room.do(CHAIR, "member.represent", {"member": "aple-kh", "name": "Mallory"}).events
    assert room.join("m", "Mallory", org="aple-kh").error is None
    again = room.do(CHAIR, "member.represent", {"member": "aple-kh", "name": "mallory"})
    assert again.error is not None and again.error["code"] == "already_representative"
    nope = room.do(CHAIR, "member.represent", {"member": "nope", "name": "X"})
    assert nope.error is not None and nope.error["code"] == "not_on_roll"


def test_invites_recorded_once_revoked_once_seen_by_the_chair_only() -> None:
    room = Room()
    first = room.record("j1", by="chair", org="aple-kh", name="Sokha Chan")
    assert [e["type"] for e in first.events] == ["invite.minted"]
    assert first.events[0]["to"] == ["role:moderator"]  # type: ignore[typeddict-item]
    assert room.record("j1", name="Someone else").events == []  # recorded already
    assert room.state["invites"]["invites"]["j1"]["name"] == "Sokha Chan"
    assert not invites.is_revoked(room.state, "j1")
    revoked = room.do(CHAIR, "invite.revoke", {"jti": "j1"})
    assert [e["type"] for e in revoked.events] == ["invite.revoked"]
    assert invites.is_revoked(room.state, "j1")
    for jti, code in (("j1", "already_revoked"), ("j9", "unknown_invite")):
        out = room.do(CHAIR, "invite.revoke", {"jti": jti})
        assert out.error is not None and out.error["code"] == code
    participant = fold.view(room.state, {"pid": "p", "role": "participant"})
    assert participant["invites"]["invites"] == {}
    assert participant["invites"]["reps"]["aple-kh"] == ["Sokha Chan", "Dara Keo"]
    chair = fold.view(room.state, {"pid": "chair", "role": "moderator"})
    assert chair["invites"]["invites"]["j1"]["revoked"] is True
    forbidden = room.do({"pid": "p", "role": "participant", "conn": None}, "invite.revoke", {})
    assert forbidden.error is not None and forbidden.error["code"] == "forbidden"


@pytest.mark.parametrize(
    ("reps", "org", "name", "ok"),
    [
        (["Sokha Chan"], "aple-kh", "sokha chan", True),
        (["Sokha Chan"], "aple-kh", "Sokha", False),
        ([], "open-org", "Anyone", True),
        (None, "not-a-member", "Anyone", True),
        (["Sokha Chan"], None, "Anyone", True),
    ],
)
def test_check_representative(reps: list[str] | None, org: str | None, name: str, ok: bool) -> None:
    if ok:
        invites.check_representative(reps, org, name)
    else:
        with pytest.raises(Refused, match="not a representative"):
            invites.check_representative(reps, org, name)
