"""Polls over real nodes: two uvicorn nodes on one real Redis, races, restarts, secrecy, exports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import httpx
import pytest

from server import fold
from server.client import Client
from server.node.auth import Invites
from server.node.config import Assembly, parse_assembly
from server.protocol import unpack
from server.voter import SecretBallot, cast_secret, claim, frame
from tests.conftest import RedisServer, timeout
from tests.waiting import eventually

pytestmark = pytest.mark.redis
COUNTRIES = ["KH", "DO", "PS", "UG", "AT", "RS", "ML", "KZ", "HU", "GN", "BR"]


def weight(i: int, members: int, secret: bool) -> float:
    """Weights 1, 1.5 and 2 in turn; with a prepared secret vote, in pairs (the config
    refuses a secret vote whose roll has a weight held by one member), an odd last one 1."""
    if not secret:
        return [1, 1.5, 2][i % 3]
    return 1 if i == members - 1 and members % 2 else [1, 1.5, 2][(i // 2) % 3]


def make_assembly(
    members: int, polls: list[dict[str, Any]] | None = None, **voting: Any
) -> Assembly:
    return parse_assembly(
        {
            "assembly": {"name": "Test Assembly", "floor": "en", "languages": ["es", "fr", "ru"]},
            "members": [
                {
                    "id": f"m{i}",
                    "name": f"Member {i}",
                    "country": COUNTRIES[i % 11],
                    "weight": weight(i, members, any(p.get("secret") for p in polls or [])),
                }
                for i in range(members)
            ],
            "rooms": [
                {
                    "id": "plenary",
                    "title": "Plenary",
                    "channels": ["es", "fr", "ru"],
                    "voting": {
                        **voting
                    },  # 2048-bit keys: derived once per process (ballots.private_key)
                    "polls": polls or [],
                }
            ],
        },
        "test",
    )


SECRET_VOTE = {
    "id": "vote",
    "kind": "yesno",
    "electorate": "roll",
    "secret": True,
    "mix": 3,
    "question": {"en": "Adopt?", "fr": "Adopter ?"},
    "quorum": {"of": "roll", "fraction": 0.5},
}
OPEN_VOTE = {**SECRET_VOTE, "id": "open-vote", "secret": False, "mix": 1}


async def connect(url: str, invites: Invites, role: str = "participant", **claims: Any) -> Client:
    token = invites.mint(room="plenary", role=role, name=claims.pop("name", role), **claims)
    return await Client.connect(url, token)


async def wait_poll(client: Client, poll_id: str, pred: Any, t: float = 5) -> Any:
    """Wait until ``pred(poll)`` holds in the client's copy; return the poll."""

    def ready(state: dict[str, Any]) -> Any:
        poll = state["polls"]["polls"].get(poll_id)
        return poll if poll is not None and pred(poll) else None

    return await client.wait_for(ready, timeout(t))


async def open_poll(chair: Client, poll_id: str, **args: Any) -> None:
    # A secret poll opens once a node has offered its keys; that takes a moment at start.
    await wait_poll(chair, poll_id, lambda p: p["keys"] is not None or not p["secret"], 10)
    await chair.command("poll.open", {"poll": poll_id, **args})


async def test_secret_formal_vote_across_two_nodes(
    redis_url: str, start_node: Any, invites: Invites
) -> None:
    assembly = make_assembly(4, [SECRET_VOTE])
    a = await start_node(redis_url, config=assembly)
    b = await start_node(redis_url, config=assembly)
    chair = await connect(a.url, invites, "moderator", name="Chair")
    reps = [
        await connect((a, b)[i % 2].url, invites, name=f"Rep {i}", org=f"m{i}") for i in range(4)
    ]
    # m3 gives its proxy to m2 before the vote opens.
    await reps[3].command("proxy.grant", {"to": "m2"})
    await open_poll(chair, "vote")
    for r in reps:
        await wait_poll(r, "vote", lambda p: p["state"] == "open")
    choices = [["yes"], ["no"], ["yes"]]
    casts = [cast_secret(reps[i], "vote", choices[i], timeout=timeout(10)) for i in range(3)]
    casts.append(cast_secret(reps[2], "vote", ["abstain"], on_behalf="m3", timeout=timeout(10)))
    tasks = [asyncio.create_task(c) for c in casts]
    # Every ballot is acknowledged at once (appended sealed); the chair sees the turnout.
    done = await asyncio.gather(*tasks)
    assert all(reply["ok"] for _, reply in done), [r for _, r in done]
    await wait_poll(
        chair, "vote", lambda p: (p.get("progress") or {}).get("turnout", {}).get("n") == 4
    )
    # During the vote, neither the chair's copy nor either node's replica holds a choice:
    # the chair has turnout, zero counts and no claims; nodes hold sealed bytes.
    seen = chair.state["polls"]["polls"]["vote"]
    assert seen["voted"] == {} and seen["progress"]["outcome"] == "secret"
    assert all(o["n"] == 0 for o in seen["progress"]["options"])
    assert all(v == [0, 0] for v in seen["counts"].values())
    for node in (a, b):
        replica = node.node.hubs["plenary"].state["polls"]["polls"]["vote"]
        assert all(v == [0, 0] for v in replica["counts"].values())
        assert sorted(replica["ballots"]) == sorted(reply["tracker"] for _, reply in done)
        for sealed in replica["ballots"].values():
            assert set(sealed["sealed"]) <= set("0123456789abcdef")
    # The delegating member itself is refused, and its proxy cannot vote twice.
    _, refused = await cast_secret(reps[3], "vote", ["no"])
    assert refused["code"] == "delegated"
    _, twice = await cast_secret(reps[2], "vote", ["no"], on_behalf="m3")
    assert twice["code"] == "already_voted"
    await chair.command("poll.close", {"poll": "vote"})
    await wait_poll(chair, "vote", lambda p: p["sealed"])
    await chair.command("poll.publish", {"poll": "vote"})
    results = [
        await wait_poll(r, "vote", lambda p: p.get("result") and p["state"] == "published")
        for r in reps
    ]
    result = reps[0].state["polls"]["polls"]["vote"]["result"]
    assert results and result["ballots"] == 4
    # m0 and m1 weigh 1, m2 and m3 1.5 (m2 casts m3's ballot as its proxy).
    assert {o["id"]: o["w"] for o in result["options"]} == {"yes": 250, "no": 100, "abstain": 150}
    # Each voter finds its tracker; the ballots are listed apart, with no token.
    assert result["trackers"] == sorted(reply["tracker"] for _, reply in done)
    assert result["revealed"] == [
        {"choice": "abstain", "w": 150},
        {"choice": "no", "w": 100},
        {"choice": "yes", "w": 100},
        {"choice": "yes", "w": 150},
    ]
    assert result["counted"] == 4 and result["invalid"] == 0
    await same_end(a, b)
    assert fold.digest(a.node.hubs["plenary"].state) == fold.digest(b.node.hubs["plenary"].state)
    for c in (chair, *reps):
        await c.close()


async def test_a_timer_closes_the_poll_everywhere(
    redis_url: str, start_node: Any, invites: Invites
) -> None:
    assembly = make_assembly(2, [OPEN_VOTE])
    a = await start_node(redis_url, config=assembly)
    b = await start_node(redis_url, config=assembly)
    chair = await connect(a.url, invites, "moderator")
    rep = await connect(b.url, invites, org="m0")
    await open_poll(chair, "open-vote", seconds=1)
    poll = await wait_poll(rep, "open-vote", lambda p: p["state"] == "open")
    assert poll["closes_at"] is not None
    await rep.command("ballot.cast", {"poll": "open-vote", "choice": "yes"})
    await wait_poll(rep, "open-vote", lambda p: p["state"] == "closed", 4)
    reply = await rep.request("ballot.cast", {"poll": "open-vote", "choice": "no", "for": "m0"})
    assert reply["code"] == "poll_is_closed"
    await wait_poll(chair, "open-vote", lambda p: p["sealed"] and p["result"]["ballots"] == 1)
    await chair.close()
    await rep.close()


async def test_bad_ballot_frames_are_refused_with_codes(
    redis_url: str, start_node: Any, invites: Invites
) -> None:
    assembly = make_assembly(2, [SECRET_VOTE, OPEN_VOTE])
    a = await start_node(redis_url, config=assembly)
    chair = await connect(a.url, invites, "moderator")
    rep = await connect(a.url, invites, org="m0")
    await wait_poll(chair, "vote", lambda p: p["keys"] is not None, 10)
    early = await frame(rep, "claim", {"poll": "vote", "blinded": "ab12"})
    assert early["code"] == "poll_is_draft"
    await open_poll(chair, "vote")
    await open_poll(chair, "open-vote")
    await wait_poll(rep, "vote", lambda p: p["state"] == "open")
    assert (await frame(rep, "claim", {"poll": "open-vote", "blinded": "ab"}))[
        "code"
    ] == "open_ballot"
    assert (await frame(rep, "vote", {"poll": "vote"}))["code"] == "bad_args"
    ballot = SecretBallot.new(rep.state, "plenary", "vote", "m0")
    ok = await claim(rep, ballot)
    assert ok["ok"]
    for bad in ({"poll": "vote", "sealed": "XYZ"}, {"poll": "vote"}, {"sealed": "ab"}):
        assert (await frame(rep, "deposit", bad))["code"] == "bad_args", bad
    assert (await frame(rep, "deposit", {"poll": "open-vote", "sealed": "ab"}))[
        "code"
    ] == "open_ballot"
    sealed = ballot.sealed(["yes"])
    first = await frame(rep, "deposit", sealed)
    again = await frame(rep, "deposit", sealed)
    assert first["ok"] and again == {**first, "cid": again["cid"]}
    # Nobody can read a sealed ballot before the reveal, so one person appends at most
    # SEALED_PER_CLAIM new ones per claim; re-sending the same one costs nothing.
    from server.polls import SEALED_PER_CLAIM

    for _ in range(SEALED_PER_CLAIM - 1):
        assert (await frame(rep, "deposit", ballot.sealed(["no"])))["ok"]
    assert (await frame(rep, "deposit", sealed))["ok"]
    assert (await frame(rep, "deposit", ballot.sealed(["no"])))["code"] == "no_claim"
    other = await connect(a.url, invites, org="m1")
    await wait_poll(other, "vote", lambda p: p["state"] == "open")
    assert (await frame(other, "deposit", ballot.sealed(["no"])))["code"] == "no_claim"
    assert (await frame(chair, "deposit", sealed))["code"] == "forbidden"
    await other.close()
    assert (await rep.request("ballot.deposit", {"poll": "vote", "sealed": "ab"}))[
        "code"
    ] == "forbidden"
    reveal = {"poll": "vote", "ballots": [], "opened": 0}
    assert (await rep.request("ballot.reveal", reveal))["code"] == "forbidden"
    assert (await rep.request("poll.close", {"poll": "vote"}))["code"] == "forbidden"
    assert chair.state["polls"]["polls"]["vote"]["cast"] == [0, 0]
    await chair.close()
    await rep.close()


async def test_duplicate_cast_races_on_two_nodes_count_exactly_once(
    redis_url: str, start_node: Any, invites: Invites
) -> None:
    """1,000 races: two representatives of one member, one on each node, at the same moment,
    plus a retry of one of them with the same command id. Exactly one ballot counts."""
    members, polls = 100, 10
    assembly = make_assembly(members)
    a = await start_node(redis_url, config=assembly)
    b = await start_node(redis_url, config=assembly)
    chair = await connect(a.url, invites, "moderator")
    gate = asyncio.Semaphore(10)

    async def rep(url: str, i: int, side: str) -> Client:
        async with gate:
            return await connect(url, invites, org=f"m{i}", name=f"{side}{i}")

    left = await asyncio.gather(*(rep(a.url, i, "A") for i in range(members)))
    right = await asyncio.gather(*(rep(b.url, i, "B") for i in range(members)))
    started = time.monotonic()
    for k in range(polls):
        secret = k % 2 == 1
        definition = {**(SECRET_VOTE if secret else OPEN_VOTE), "mix": 1 if not secret else 5}
        definition.pop("id")
        await chair.command("poll.create", {"def": definition})
        poll_id = f"p{k + 1}"
        await open_poll(chair, poll_id)
        await asyncio.gather(
            *(wait_poll(c, poll_id, lambda p: p["state"] == "open") for c in (*left, *right))
        )

        deposits: list[asyncio.Task[dict[str, Any]]] = []

        async def race(
            i: int,
            poll_id: str = poll_id,
            secret: bool = secret,
            deposits: list[asyncio.Task[dict[str, Any]]] = deposits,
        ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
            if secret:
                one = SecretBallot.new(left[i].state, "plenary", poll_id, f"m{i}")
                two = SecretBallot.new(right[i].state, "plenary", poll_id, f"m{i}")
                cid = left[i].next_cid()
                x, y, z = await asyncio.gather(
                    claim(left[i], one, cid=cid), claim(right[i], two), claim(left[i], one, cid=cid)
                )
                won = one if x["ok"] else two
                if x["ok"] or y["ok"]:
                    deposits.append(
                        asyncio.create_task(
                            frame(
                                left[i] if x["ok"] else right[i],
                                "deposit",
                                won.sealed(["yes" if i % 2 else "no"]),
                                timeout=timeout(20),
                            )
                        )
                    )
                return x, y, z
            cid = left[i].next_cid()
            return await asyncio.gather(
                left[i].request("ballot.cast", {"poll": poll_id, "choice": "yes"}, cid=cid),
                right[i].request("ballot.cast", {"poll": poll_id, "choice": "no"}),
                left[i].request("ballot.cast", {"poll": poll_id, "choice": "yes"}, cid=cid),
            )

        outcomes = await asyncio.gather(*(race(i) for i in range(members)))
        for x, y, retry in outcomes:
            assert x["ok"] != y["ok"], (x["message"], y["message"])  # exactly one of the two
            loser = y if x["ok"] else x
            assert loser["code"] == "already_voted", loser
            assert "has already voted" in loser["message"]
            assert retry["ok"] == x["ok"]  # the retry repeats the first outcome
        await chair.command("poll.close", {"poll": poll_id})
        assert all(d["ok"] for d in await asyncio.gather(*deposits))
        poll = await wait_poll(chair, poll_id, lambda p: p["sealed"], 15)
        assert poll["result"]["ballots"] == members and poll["result"]["missing"] == 0
        assert len(poll["voted"]) == members or secret  # the chair sees a secret turnout only
        assert poll["result"]["turnout"]["n"] == members
        wins = sum(1 for x, _, _ in outcomes if x["ok"])
        if not secret:
            assert poll["counts"]["yes"][0] == wins
            assert poll["counts"]["no"][0] == members - wins
    elapsed = time.monotonic() - started
    await same_end(a, b)
    assert fold.digest(a.node.hubs["plenary"].state) == fold.digest(b.node.hubs["plenary"].state)
    assert elapsed < timeout(60), f"1,000 races took {elapsed:.1f} s"
    for c in (chair, *left, *right):
        await c.close()


@pytest.fixture
def durable_redis(tmp_path: Any) -> Any:
    """A redis-server run with the shipped production config (AOF, appendfsync always)."""
    from tests.conftest import free_port

    server = RedisServer(free_port(), tmp_path, config="config/redis-production.conf")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_acknowledged_ballots_survive_a_redis_restart(
    durable_redis: RedisServer, start_node: Any, invites: Invites
) -> None:
    voters = 30
    assembly = make_assembly(voters, [OPEN_VOTE, SECRET_VOTE])
    a = await start_node(durable_redis.url, config=assembly)
    b = await start_node(durable_redis.url, config=assembly)
    chair = await connect(a.url, invites, "moderator")
    reps = [await connect((a, b)[i % 2].url, invites, org=f"m{i}") for i in range(voters)]
    await open_poll(chair, "open-vote")
    await open_poll(chair, "vote")
    for r in reps:
        await wait_poll(r, "vote", lambda p: p["state"] == "open")
    acked_open: list[str] = []
    acked_secret: list[str] = []
    unavailable: list[str] = []

    async def vote(i: int) -> None:
        await asyncio.sleep(0.01 * i)  # not synchronisation: spread over ~0.3 s, across the restart
        cid = reps[i].next_cid()
        for _ in range(100):  # retry with the same command id until the log takes it
            try:
                reply = await reps[i].request(
                    "ballot.cast", {"poll": "open-vote", "choice": "yes"}, cid=cid
                )
            except (TimeoutError, ConnectionError):
                continue
            if reply["ok"]:
                acked_open.append(f"m{i}")
                break
            assert reply["code"] == "unavailable", reply
            unavailable.append(reply["message"])
            await asyncio.sleep(0.05)  # not synchronisation: a client's pause before a retry
        ballot = SecretBallot.new(reps[i].state, "plenary", "vote", f"m{i}")
        for _ in range(100):
            reply = await claim(reps[i], ballot)
            if reply["ok"]:
                break
            assert reply["code"] == "unavailable", reply
            unavailable.append(reply["message"])
            await asyncio.sleep(0.05)  # not synchronisation: a client's pause before a retry
        sealed = ballot.sealed(["no"])  # kept and re-sent as is: counted once
        for _ in range(100):
            try:
                reply = await frame(reps[i], "deposit", sealed, timeout=timeout(20))
            except (TimeoutError, ConnectionError):
                continue
            if reply["ok"]:
                acked_secret.append(reply["tracker"])
                break
            assert reply["code"] == "unavailable", reply
            unavailable.append(reply["message"])
            await asyncio.sleep(0.05)  # not synchronisation: a client's pause before a retry

    def crash_and_restart() -> None:
        # SIGKILL, not a clean shutdown: only what was fsync'ed to the AOF comes back.
        assert durable_redis.proc is not None
        durable_redis.proc.kill()
        durable_redis.proc.wait(10)
        durable_redis.proc = None
        time.sleep(0.2)  # not synchronisation: the outage lasts a moment
        durable_redis.start()

    tasks = [asyncio.create_task(vote(i)) for i in range(voters)]
    await eventually(lambda: acked_open, message="a first acknowledged ballot before the crash")
    await asyncio.to_thread(crash_and_restart)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout(40))
    assert len(acked_open) == voters and len(acked_secret) == voters
    assert unavailable, "no command met the outage: the test did not test the restart"
    await chair.command("poll.close", {"poll": "open-vote"})
    await chair.command("poll.close", {"poll": "vote"})
    await wait_poll(chair, "vote", lambda p: p["sealed"], 15)
    await wait_poll(chair, "open-vote", lambda p: p["sealed"])
    polls = a.node.hubs["plenary"].state["polls"]["polls"]
    assert sorted(polls["open-vote"]["voted"]) == sorted(acked_open)
    result = polls["vote"]["result"]
    assert set(result["trackers"]) == set(acked_secret) and result["counted"] == voters
    assert result["revealed"] == sorted(result["revealed"], key=lambda r: (r["choice"], r["w"]))
    assert {o["id"]: o["n"] for o in result["options"]} == {"yes": 0, "no": voters, "abstain": 0}
    # And a node started now, from Redis alone, folds the same result.
    c = await start_node(durable_redis.url, config=assembly)
    assert fold.digest(c.node.hubs["plenary"].state["polls"]) == fold.digest(
        a.node.hubs["plenary"].state["polls"]
    )
    for client in (chair, *reps):
        await client.close()


async def test_acknowledged_sealed_ballots_survive_a_node_killed_mid_vote(
    durable_redis: RedisServer, start_node: Any, invites: Invites, assembly: Assembly
) -> None:
    """Node B (its own process) takes ballots and is killed (SIGKILL) in the middle of the
    vote: every ballot it acknowledged is counted; devices whose frames were in flight send
    the same sealed ballot again through node A, and it counts once."""
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import SECRET, free_port

    a = await start_node(durable_redis.url, name="A")
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "server.cli", "serve", "--port", str(port)),
            *("--backend", durable_redis.url),
        ],
        env={**os.environ, "HEMICYCLE_SECRET": SECRET, "HEMICYCLE_NODE": "B"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    clients: list[Client] = []
    try:
        b_url = f"http://127.0.0.1:{port}"
        chair = await connect(a.url, invites, "moderator", name="Chair")
        clients.append(chair)
        poll_id = "strategic-framework"
        members = assembly.members
        tokens = [
            invites.mint(
                room="plenary",
                role="participant",
                name=(m.representatives or (m.name,))[0],
                org=m.id,
            )
            for m in members
        ]
        on_b: list[Client] = []
        async with asyncio.timeout(timeout(30)):
            for t in tokens[:7]:
                while True:
                    try:
                        on_b.append(await Client.connect(b_url, t))
                        break
                    except OSError:
                        await asyncio.sleep(0.1)
        on_a = [await Client.connect(a.url, t) for t in tokens[7:]]
        clients += on_b + on_a
        await open_poll(chair, poll_id)
        for c in on_b + on_a:
            await wait_poll(c, poll_id, lambda p: p["state"] == "open", 10)
        acked: list[str] = []
        # Five voters on B: claimed, sealed, acknowledged.
        for c in on_b[:5]:
            _, reply = await cast_secret(c, poll_id, ["yes"], timeout=timeout(10))
            assert reply["ok"], reply
            acked.append(reply["tracker"])
        # Two more on B: claimed, and their sealed ballots sent just as B dies.
        pending = []
        for c in on_b[5:]:
            ballot = SecretBallot.new(c.state, "plenary", poll_id, c.you["org"])
            assert (await claim(c, ballot))["ok"]
            pending.append((c, ballot.sealed(["no"])))
        for c, sealed in pending:
            await c.send({"type": "ballot", "cid": c.next_cid(), "name": "deposit", "args": sealed})
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # Their devices send the same sealed ballots again, through A: counted once each.
        for i, (_, sealed) in enumerate(pending):
            again = await Client.connect(a.url, tokens[5 + i])
            clients.append(again)
            reply = await frame(again, "deposit", sealed, timeout=timeout(10))
            assert reply["ok"], reply
            acked.append(reply["tracker"])
        for c in on_a:
            _, reply = await cast_secret(c, poll_id, ["abstain"], timeout=timeout(10))
            assert reply["ok"], reply
            acked.append(reply["tracker"])
        await chair.command("poll.close", {"poll": poll_id})
        poll = await wait_poll(chair, poll_id, lambda p: p["sealed"], 20)
        result = poll["result"]
        assert sorted(result["trackers"]) == sorted(acked) and len(set(acked)) == len(members)
        assert result["counted"] == len(members) and result["invalid"] == 0
        counts = {o["id"]: o["n"] for o in result["options"]}
        assert counts == {"yes": 5, "no": 2, "abstain": len(members) - 7}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for c in clients:
            with contextlib.suppress(Exception):
                await c.close()


async def test_no_record_links_a_voter_to_a_choice(
    redis_url: str, start_node: Any, invites: Invites, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assembly = make_assembly(3, [SECRET_VOTE])
    a = await start_node(redis_url, config=assembly)
    b = await start_node(redis_url, config=assembly)
    chair = await connect(a.url, invites, "moderator", name="Chair")
    names = ["Zanele Dlamini", "Oksana Koval", "Tomás Rivera"]
    reps = [await connect((a, b)[i % 2].url, invites, org=f"m{i}", name=names[i]) for i in range(3)]
    await open_poll(chair, "vote")
    for r in reps:
        await wait_poll(r, "vote", lambda p: p["state"] == "open")
    tasks = [
        asyncio.create_task(cast_secret(r, "vote", [c], timeout=timeout(10)))
        for r, c in zip(reps, ["yes", "no", "abstain"], strict=True)
    ]
    done = await asyncio.gather(*tasks)
    assert all(reply["ok"] for _, reply in done)
    redis = a.node.backends.redis
    # Before the close: the raw bytes of every stream hold no choice, no option id, no token.
    tokens = [b.token for b, _ in done]
    for key in await redis.keys("*"):
        if (await redis.type(key)).decode() == "stream":
            for _id, fields in await redis.xrange(key):
                raw = fields[b"e"]
                for word in (b"choice", b"yes", b"abstain", *(t.encode() for t in tokens)):
                    assert word not in raw, (word, unpack(raw))
    await chair.command("poll.close", {"poll": "vote"})
    await wait_poll(chair, "vote", lambda p: p["sealed"])
    await chair.command("poll.publish", {"poll": "vote"})
    for r in reps:  # every node has folded the publish and sent it out
        await wait_poll(r, "vote", lambda p: p["state"] == "published")
    await same_end(a, b)

    who = [w for i, r in enumerate(reps) for w in (r.me, names[i], f"m{i}", f"Member {i}")]
    what = [b.token for b, _ in done] + [reply["tracker"] for _, reply in done]

    def linked(text: str) -> bool:
        """A record names a voter and carries a ballot (token/tracker/choice field)."""
        ballot_like = any(w in text for w in what) or '"choice"' in text or "'choice'" in text
        return ballot_like and any(w in text for w in who)

    # Redis: every key and value, stream entries unpacked.
    records: list[str] = []
    for key in await redis.keys("*"):
        kind = (await redis.type(key)).decode()
        if kind == "stream":
            for _id, fields in await redis.xrange(key):
                records.append(json.dumps(unpack(fields[b"e"]), ensure_ascii=False))
        elif kind == "string":
            records.append(repr(unpack(await redis.get(key))))
        else:
            records.append(f"{key!r}:{kind}")
    assert records, "nothing stored?"
    entries = [r for r in records if '"cmd"' in r]
    kinds = [json.loads(r)["cmd"] for r in entries]
    claims = [i for i, k in enumerate(kinds) if k == "ballot.claim"]
    deposits = [json.loads(entries[i]) for i, k in enumerate(kinds) if k == "ballot.deposit"]
    reveals = [i for i, k in enumerate(kinds) if k == "ballot.reveal"]
    # A deposit may follow its claim, but holds only sealed bytes; the one entry with the
    # ballots in clear comes after the close and holds all of them, sorted by token.
    assert len(claims) == 3 and len(deposits) == 3
    for d in deposits:
        assert set(d["args"]) == {"poll", "sealed"} and d["actor"]["pid"] == "ballot-box"
    # (Both nodes may append the reveal: the same entry under the same cid, folded once.)
    assert reveals and min(reveals) > kinds.index("poll.close")
    contents = {json.dumps(json.loads(entries[i])["args"], sort_keys=True) for i in reveals}
    assert len(contents) == 1 and {json.loads(entries[i])["cid"] for i in reveals} == {
        json.loads(entries[reveals[0]])["cid"]
    }
    opened = json.loads(entries[reveals[0]])["args"]["ballots"]
    assert len(opened) == 3 and [b["token"] for b in opened] == sorted(tokens)
    for record in records:
        if record.startswith("{"):
            assert not linked(record), record
    # The snapshot and the replica: claims and ballots live apart.
    state = a.node.hubs["plenary"].state["polls"]["polls"]["vote"]
    assert not any(linked(json.dumps(v, ensure_ascii=False)) for v in state["voted"].values())
    assert not any(linked(json.dumps(v)) for v in state["ballots"].values())
    # Events kept for resuming clients: no event names a voter beside a ballot.
    for hub in (a.node.hubs["plenary"], b.node.hubs["plenary"]):
        for _id, events in hub.recent:
            for event in events:
                assert not linked(json.dumps(event, ensure_ascii=False)), event
    # Server log lines.
    for rec in caplog.records:
        assert not linked(rec.getMessage()), rec.getMessage()
    # Exports and metrics.
    chair_token = chair.token
    async with httpx.AsyncClient(base_url=a.url) as http:
        auth = {"Authorization": f"Bearer {chair_token}"}
        for path in (
            "/api/rooms/plenary/polls/vote/result.json",
            "/api/rooms/plenary/polls/vote/result.csv",
            "/metrics",
        ):
            text = (await http.get(path, headers=auth)).text
            assert not any(w in text for w in who), (path, text[:500])
    for c in (chair, *reps):
        await c.close()


async def test_exports_and_attendance(redis_url: str, start_node: Any, invites: Invites) -> None:
    assembly = make_assembly(4, [OPEN_VOTE])
    a = await start_node(redis_url, config=assembly)
    chair = await connect(a.url, invites, "moderator", name="Chair")
    reps = [await connect(a.url, invites, org=f"m{i}", name=f"Rep {i}") for i in range(3)]
    extra = await connect(a.url, invites, org="m0", name="Rep 0b")
    booth = await connect(a.url, invites, "interpreter", name="Ivy", booth="fr")
    async with httpx.AsyncClient(base_url=a.url) as http:
        auth = {"Authorization": f"Bearer {chair.token}"}
        path = "/api/rooms/plenary/polls/open-vote/result.json"
        assert (await http.get(path)).status_code == 401
        rep_auth = {"Authorization": f"Bearer {reps[0].token}"}
        assert (await http.get(path, headers=rep_auth)).json()["code"] == "forbidden"
        early = await http.get(path, headers=auth)
        assert early.status_code == 409 and early.json()["code"] == "poll_is_draft"
        assert (
            await http.get("/api/rooms/plenary/polls/nope/result.json", headers=auth)
        ).status_code == 404
        await open_poll(chair, "open-vote")
        for r, c in zip(reps, ["yes", "no", "yes"], strict=True):
            await wait_poll(r, "open-vote", lambda p: p["state"] == "open")
            await r.command("ballot.cast", {"poll": "open-vote", "choice": c})
        await chair.command("poll.close", {"poll": "open-vote"})
        await wait_poll(chair, "open-vote", lambda p: p["sealed"])
        data = (await http.get(path + "?lang=fr", headers=auth)).json()
        assert data["question"] == "Adopter ?" and data["outcome"] == "adopted"
        assert data["outcome_text"] == "adoptée"
        # The export is the result the chair's client holds, key for key and unit for unit,
        # plus the texts in the language asked for.
        result = chair.state["polls"]["polls"]["open-vote"]["result"]
        assert {k: data[k] for k in result} == result
        assert data["options"] == [
            {"id": "yes", "n": 2, "w": 300},
            {"id": "no", "n": 1, "w": 150},
            {"id": "abstain", "n": 0, "w": 0},
        ]
        assert data["texts"] == {"yes": "Oui", "no": "Non", "abstain": "Abstention"}
        assert data["quorum"]["met"] and data["threshold"]["met"]
        assert data["turnout"] == {"n": 3, "w": 450}
        assert data["opened_at"] <= data["closed_at"] <= data["sealed_at"]
        assert [(r["name"], r["choice"], r["w"]) for r in data["roll_call"]] == [
            ("Member 0", "yes", 100),
            ("Member 1", "no", 150),
            ("Member 2", "yes", 200),
        ]
        text = (await http.get(path.replace(".json", ".csv"), headers=auth)).text
        assert "question,Adopt?" in text and "\nyes,Yes,2,300\n" in text
        assert "\nm1,Member 1,Rep 1,no,No,150\n" in text
        assert "\nturnout.w,450\n" in text and "\nopened_at_utc,20" in text
        report = (await http.get("/api/attendance.json", headers=auth)).json()
        # The chair is not one of the members' participants (issue 11, item 7).
        assert report["line"] == "3 members from 3 countries registered 4 participants"
        assert report["interpreters"] == 1
        fr = (await http.get("/api/attendance.json?lang=fr", headers=auth)).json()
        assert fr["line"] == "3 membres de 3 pays ont inscrit 4 participants"
        csv_text = (await http.get("/api/attendance.csv", headers=auth)).text
        assert csv_text.startswith("summary,3 members from 3 countries registered 4")
        assert "Rep 0b,participant,Member 0,m0,KH,plenary" in csv_text
    for c in (chair, *reps, extra, booth):
        await c.close()


async def same_end(*nodes: Any) -> None:
    """Wait until every node's hub has folded the same last entry of the room's log."""
    await eventually(
        lambda: [n.node.hubs["plenary"].state["meta"]["last"] for n in nodes],
        until=lambda ends: len(set(ends)) == 1,
        timeout=10,
        message="the nodes to fold up to the same entry",
    )
