"""Trust over the wire (issue 9): rooms, invites, representatives, the observer, booth chat.

Real uvicorn nodes, real sockets; revocation across two nodes on a real redis-server.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from server.client import Client, CommandError
from server.node.auth import Invites
from server.node.sessions import CLOSE_REVOKED

from .conftest import NodeFactory, timeout

PLENARY, PANEL = "plenary", "panel"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def closed_with(client: Client) -> int | None:
    async def wait() -> None:
        while client.close_code is None:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(wait(), timeout(5))
    return client.close_code


# --- rooms ------------------------------------------------------------------------------------


async def test_a_moderator_reaches_only_their_own_room(
    start_node: NodeFactory, invites: Invites
) -> None:
    node = await start_node()
    panel_chair = invites.mint(room=PANEL, role="moderator", name="Panel chair")
    chair = invites.mint(room=PLENARY, role="moderator", name="Chair")
    async with httpx.AsyncClient(base_url=node.url) as http:
        # The attack: the panel's chair mints a plenary participant for a member.
        body = {"room": PLENARY, "role": "participant", "name": "Sokha Chan", "org": "aple-kh"}
        r = await http.post("/api/invites", json=body, headers=bearer(panel_chair))
        assert r.status_code == 403 and r.json()["code"] == "wrong_room", r.text
        body["role"] = "moderator"
        r = await http.post("/api/invites", json=body, headers=bearer(panel_chair))
        assert r.status_code == 403 and r.json()["code"] == "wrong_room"
        for path in (
            "/api/transcripts/plenary/original",
            "/api/rooms/plenary/polls/strategic-framework/result.json",
            "/api/attendance.json?room=plenary",
            "/api/recordings?room=plenary",
            "/api/recordings/plenary/1/floor.ogg",
        ):
            r = await http.get(path, headers=bearer(panel_chair))
            assert r.status_code == 403 and r.json()["code"] == "wrong_room", (path, r.text)
        # Their own room's data is theirs.
        r = await http.get("/api/attendance.json", headers=bearer(panel_chair))
        assert r.status_code == 200 and r.json()["participants"] == 0
        r = await http.get("/api/transcripts/panel/original", headers=bearer(panel_chair))
        assert r.status_code == 200
        # Nothing was minted or recorded in the plenary by the refused requests.
        assert node.node.hubs[PLENARY].state["invites"]["invites"] == {}
        r = await http.post(
            "/api/invites", json={"role": "participant", "name": "Guest"}, headers=bearer(chair)
        )
        assert r.status_code == 200
    records = node.node.hubs[PLENARY].state["invites"]["invites"]
    assert list(records) == [r.json()["jti"]]


async def test_attendance_counts_one_room_and_no_observer(
    start_node: NodeFactory, invites: Invites
) -> None:
    node = await start_node()
    chair = invites.mint(room=PLENARY, role="moderator", name="Chair")
    people = [
        invites.mint(room=PLENARY, role="participant", name="Sokha Chan", org="aple-kh"),
        invites.mint(room=PLENARY, role="observer", name="Olga", org="mais-do"),
        invites.mint(room=PANEL, role="participant", name="Rania Haddad", org="sawa-ps"),
    ]
    clients = [await Client.connect(node.url, t) for t in people]
    try:
        async with httpx.AsyncClient(base_url=node.url) as http:
            report = (await http.get("/api/attendance.json", headers=bearer(chair))).json()
        assert (report["members"], report["participants"]) == (1, 1)
        assert {p["name"]: p["rooms"] for p in report["people"]} == {
            "Sokha Chan": ["plenary"],
            "Olga": ["plenary"],
        }
    finally:
        for c in clients:
            await c.close()


# --- invites: recorded, listed, revoked ------------------------------------------------------


async def test_invites_are_recorded_and_revoked_on_every_node(
    start_node: NodeFactory, redis_url: str, invites: Invites
) -> None:
    a = await start_node(redis_url, name="A")
    b = await start_node(redis_url, name="B")
    chair = await Client.connect(a.url, invites.mint(room=PLENARY, role="moderator", name="Chair"))
    async with httpx.AsyncClient(base_url=a.url) as http:
        minted = await http.post(
            "/api/invites",
            json={"role": "participant", "name": "Sokha Chan", "org": "aple-kh", "lang": "es"},
            headers=bearer(chair.token),
        )
    assert minted.status_code == 200, minted.text
    token, jti = minted.json()["token"], minted.json()["jti"]
    # The chair's list holds it (who minted it, for whom, role, org, expiry).
    record = await chair.wait_for(lambda s: s["invites"]["invites"].get(jti))
    assert record["by"] == chair.me and record["name"] == "Sokha Chan"
    assert (record["role"], record["org"], record["revoked"]) == ("participant", "aple-kh", False)
    assert record["exp"] > time.time() + 71 * 3600
    # A CLI-minted invite is recorded when first used, by nobody.
    cli = invites.mint(room=PLENARY, role="participant", name="Guest")
    guest = await Client.connect(b.url, cli)
    cli_jti = guest.you["jti"]
    record = await chair.wait_for(lambda s: s["invites"]["invites"].get(cli_jti))
    assert record["by"] is None
    # Everyone else sees no invite list.
    assert guest.state["invites"]["invites"] == {}

    on_a = await Client.connect(a.url, token)
    on_b = await Client.connect(b.url, token)
    await chair.command("invite.revoke", {"jti": jti})
    assert await closed_with(on_a) == CLOSE_REVOKED
    assert await closed_with(on_b) == CLOSE_REVOKED
    for c in (on_a, on_b):
        assert any(e["code"] == "invite_revoked" for e in c.errors)
    # Reconnects refused on both nodes; other connections untouched.
    for url in (a.url, b.url):
        with pytest.raises(CommandError) as info:
            await Client.connect(url, token)
        assert info.value.code == "invite_revoked"
    assert guest.close_code is None
    reply = await chair.request("invite.revoke", {"jti": jti})
    assert reply["code"] == "already_revoked"
    reply = await chair.request("invite.revoke", {"jti": "nope"})
    assert reply["code"] == "unknown_invite"
    # Another room's chair cannot revoke the plenary's invites: their room has no record.
    panel = await Client.connect(b.url, invites.mint(room=PANEL, role="moderator", name="P"))
    assert (await panel.request("invite.revoke", {"jti": cli_jti}))["code"] == "unknown_invite"
    assert (await guest.request("invite.revoke", {"jti": cli_jti}))["code"] == "forbidden"
    # A revoked moderator token is refused by the HTTP routes too.
    async with httpx.AsyncClient(base_url=b.url) as http:
        chair2 = invites.mint(room=PLENARY, role="moderator", name="Vice chair")
        vice = await Client.connect(b.url, chair2)
        await chair.command("invite.revoke", {"jti": vice.you["jti"]})
        await closed_with(vice)
        r = await http.get("/api/attendance.json", headers=bearer(chair2))
        assert r.status_code == 401 and r.json()["code"] == "invite_revoked"
    for c in (chair, guest, panel):
        await c.close()


# --- representatives ----------------------------------------------------------------------


async def test_an_invite_for_a_member_names_one_of_its_representatives(
    start_node: NodeFactory, invites: Invites
) -> None:
    node = await start_node()
    chair = await Client.connect(
        node.url, invites.mint(room=PLENARY, role="moderator", name="Chair")
    )
    async with httpx.AsyncClient(base_url=node.url) as http:
        body = {"role": "participant", "name": "Mallory", "org": "aple-kh"}
        r = await http.post("/api/invites", json=body, headers=bearer(chair.token))
        assert r.status_code == 400 and r.json()["code"] == "not_representative", r.text
        # An invite minted elsewhere (the CLI would refuse it too) is refused at connect.
        impostor = invites.mint(room=PLENARY, role="participant", name="Mallory", org="aple-kh")
        with pytest.raises(CommandError) as info:
            await Client.connect(node.url, impostor)
        assert info.value.code == "not_representative"
        assert "Mallory" not in {
            p["name"] for p in node.node.hubs[PLENARY].state["core"]["people"].values()
        }
        # The chair adds a representative (a logged command); then both paths accept them.
        await chair.command("member.represent", {"member": "aple-kh", "name": "Mallory"})
        r = await http.post("/api/invites", json=body, headers=bearer(chair.token))
        assert r.status_code == 200
        rep = await Client.connect(node.url, impostor)
        reply = await chair.request("member.represent", {"member": "nope", "name": "X"})
        assert reply["code"] == "not_on_roll"
    # A configured representative, case and spaces aside, is accepted.
    sokha = await Client.connect(
        node.url, invites.mint(room=PLENARY, role="participant", name=" sokha  chan", org="aple-kh")
    )
    for c in (chair, rep, sokha):
        await c.close()


async def test_a_roll_call_names_the_representative_who_voted(
    start_node: NodeFactory, invites: Invites
) -> None:
    node = await start_node()
    chair = await Client.connect(
        node.url, invites.mint(room=PLENARY, role="moderator", name="Chair")
    )
    reps = {
        org: await Client.connect(
            node.url, invites.mint(room=PLENARY, role="participant", name=name, org=org)
        )
        for org, name in (("aple-kh", "Dara Keo"), ("sawa-ps", "Rania Haddad"))
    }
    open_vote = {
        "question": {"en": "Adopt?"},
        "options": [{"id": "yes", "text": "Yes"}, {"id": "no", "text": "No"}],
        "electorate": "roll",
    }
    await chair.command("poll.create", {"def": open_vote})
    poll = [p for p in chair.state["polls"]["polls"] if p[1:].isdigit()][0]
    await chair.command("poll.open", {"poll": poll})
    for client in reps.values():
        await client.wait_for(lambda s: s["polls"]["polls"][poll]["state"] == "open")
        await client.command("ballot.cast", {"poll": poll, "choice": "yes"})
    await chair.command("poll.close", {"poll": poll})
    result = await chair.wait_for(lambda s: s["polls"]["polls"][poll].get("result"))
    assert {(r["voter"], r["by"]) for r in result["roll_call"]} == {
        ("aple-kh", "Dara Keo"),
        ("sawa-ps", "Rania Haddad"),
    }
    for c in (chair, *reps.values()):
        await c.close()


# --- the observer ---------------------------------------------------------------------------


async def test_an_observer_watches_and_never_votes(
    start_node: NodeFactory, invites: Invites
) -> None:
    node = await start_node()
    chair = await Client.connect(
        node.url, invites.mint(room=PLENARY, role="moderator", name="Chair")
    )
    obs = await Client.connect(
        node.url, invites.mint(room=PLENARY, role="observer", name="Olga", org="aple-kh")
    )
    quick = {
        "question": {"en": "Tea?"},
        "options": [{"id": "yes", "text": "Yes"}, {"id": "no", "text": "No"}],
        "electorate": "present",
    }
    await chair.command("poll.create", {"def": quick})
    poll = [p for p in chair.state["polls"]["polls"] if p[1:].isdigit()][0]
    await chair.command("poll.open", {"poll": poll})
    await obs.wait_for(lambda s: s["polls"]["polls"][poll]["state"] == "open")
    for name, args in (
        ("ballot.cast", {"poll": poll, "choice": "yes"}),
        ("ballot.claim", {"poll": poll, "blinded": "ab" * 64}),
        ("hand.raise", {}),
        ("hand.lower", {}),
        ("floor.revoke", {}),
        ("proxy.grant", {"to": "sawa-ps"}),
        ("chat.post", {"chat": "all", "text": "hi"}),
    ):
        assert (await obs.request(name, args))["code"] == "forbidden", name
    await obs.send({"type": "react", "emoji": "👏"})
    error = await obs.wait_message(lambda m: m["type"] == "error")
    assert error["code"] == "forbidden"
    await obs.command("channel.choose", {"lang": "fr"})
    assert (await chair.request("floor.grant", {"pid": obs.me}))["code"] == "observer"
    await chair.command("poll.close", {"poll": poll})
    result = await chair.wait_for(lambda s: s["polls"]["polls"][poll].get("result"))
    assert result["eligible"]["n"] == 0  # the observer is not counted as present to vote
    for c in (chair, obs):
        await c.close()


# --- booth chat -----------------------------------------------------------------------------


async def test_booth_chat_reaches_only_that_booths_interpreters_and_the_chair(
    start_node: NodeFactory, invites: Invites
) -> None:
    node = await start_node()

    async def join(role: str, name: str, **claims: Any) -> Client:
        return await Client.connect(
            node.url, invites.mint(room=PLENARY, role=role, name=name, **claims)
        )

    es1 = await join("interpreter", "Elena", booth="es", pair=["en", "es"])
    es2 = await join("interpreter", "Pablo", booth="es", pair=["en", "es"])
    cap = await join("captioner", "Cora", booth="es")
    guest = await join("participant", "Pia", booth="es")
    chair = await join("moderator", "Chair")
    await es1.command("chat.post", {"chat": "booth", "text": "I take the next one"})
    for c in (es2, chair):
        await c.wait_message(
            lambda m: m["type"] == "events" and any(e["type"] == "chat.posted" for e in m["events"])
        )
    await chair.command("notice.post", {"text": "marker"})  # after the chat, in log order
    for c in (cap, guest):
        await c.wait_for(lambda s: s["core"]["notice"])
        posted = [
            e
            for m in c.received
            if m["type"] == "events"
            for e in m["events"]
            if e["type"] == "chat.posted"
        ]
        assert posted == [], c.you["role"]
        assert c.state["channels"]["chats"] == {}
    for c in (es1, es2, cap, guest, chair):
        await c.close()


# --- the pages --------------------------------------------------------------------------------


@pytest.mark.browser
async def test_the_chair_revokes_from_the_page_and_the_observer_is_told(
    start_node: NodeFactory, invites: Invites, browser: Any
) -> None:
    from playwright.async_api import expect

    node = await start_node()
    ms = int(timeout(5) * 1000)
    errors: list[str] = []

    async def open_page(token: str) -> Any:
        page = await (await browser.new_context()).new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(node.node.link(token, PLENARY))
        return page

    chair_token = invites.mint(room=PLENARY, role="moderator", name="Chair")
    chair = await open_page(chair_token)
    async with httpx.AsyncClient(base_url=node.url) as http:
        minted = await http.post(
            "/api/invites",
            json={"role": "participant", "name": "Sokha Chan", "org": "aple-kh"},
            headers=bearer(chair_token),
        )
    sokha = await open_page(minted.json()["token"])
    observer = await open_page(invites.mint(room=PLENARY, role="observer", name="Olga"))

    # The observer is labelled and told they do not vote; no hand to raise.
    await expect(observer.locator("#observer-note")).to_contain_text("do not vote", timeout=ms)
    await expect(chair.locator("#people-list li", has_text="Olga")).to_contain_text(
        "Observer", timeout=ms
    )
    await expect(observer.locator("#hand-button")).to_be_hidden()
    await observer.locator("#ui-lang").select_option("fr")
    await expect(observer.locator("#observer-note")).to_contain_text("vous ne votez pas")

    # The chair's list: who minted which invite, for whom; revoking closes Sokha's page.
    # It is on the console's second view (docs: the chair's console, issue 11).
    await chair.get_by_role("tab", name="Votes, attendance and exports").click()
    row = chair.locator("#invites-list li", has_text="Sokha Chan")
    await expect(row).to_contain_text("minted by Chair", timeout=ms)
    await expect(chair.locator("#invites-list li", has_text="Olga")).to_contain_text(
        "minted on the server", timeout=ms
    )
    await expect(sokha.locator("#status")).to_have_attribute("data-status", "connected", timeout=ms)
    await row.get_by_role("button", name="Revoke").click()
    await expect(row).to_contain_text("revoked", timeout=ms)
    await expect(sokha.locator("#status")).to_have_attribute("data-status", "refused", timeout=ms)
    assert not await observer.locator("#invites-list").count()  # the list is the chair's

    # The chair adds a representative from the page; an invite naming them is then admitted.
    impostor = invites.mint(room=PLENARY, role="participant", name="Mallory", org="aple-kh")
    with pytest.raises(CommandError):
        await Client.connect(node.url, impostor)
    # By keyboard only, from the member list: type to pick, Tab to the name, Tab, Enter.
    await chair.locator("#reps-member").focus()
    await chair.keyboard.type("APLE")
    await expect(chair.locator("#reps-member")).to_have_value("aple-kh")
    await chair.keyboard.press("Tab")
    await expect(chair.locator("#reps-name")).to_be_focused()
    await chair.keyboard.type("Mallory")
    await chair.keyboard.press("Tab")
    await expect(chair.get_by_role("button", name="Add a representative")).to_be_focused()
    await chair.keyboard.press("Enter")
    await expect(chair.locator("#toasts")).to_contain_text("Mallory now represents", timeout=ms)
    async with await Client.connect(node.url, impostor) as mallory:
        assert mallory.you["org"] == "aple-kh"
    assert errors == []
