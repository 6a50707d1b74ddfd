"""The demo's formal vote end to end in real Chromium pages: chair, two member pages (one
voting also through a proxy), close, publish, a chart on every page in its own language."""

from __future__ import annotations

from typing import Any

import pytest

from server import blind, seal
from server.client import Client
from server.node.auth import Invites
from tests.conftest import timeout

pytestmark = pytest.mark.browser
VOTE = "strategic-framework"


async def page_for(browser: Any, url: str, token: str, locale: str) -> Any:
    context = await browser.new_context(locale=locale)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    await page.goto(f"{url}/r/plenary#t={token}")
    await page.wait_for_function(
        "() => window.HC && HC.state && HC.connected", timeout=timeout(5) * 1000
    )
    return page


async def test_formal_secret_vote_in_three_browsers(
    browser: Any, start_node: Any, invites: Invites
) -> None:
    node = await start_node("memory://")
    mint = invites.mint
    chair = await page_for(
        browser, node.url, mint(room="plenary", role="moderator", name="Chair", lang="en"), "en-GB"
    )
    # SAWA delegates its vote to MAIS before the vote opens (a bot, not a page).
    sawa = await Client.connect(
        node.url, mint(room="plenary", role="participant", name="Rania Haddad", org="sawa-ps")
    )
    await sawa.command("proxy.grant", {"to": "mais-do"})
    fr = await page_for(
        browser,
        node.url,
        mint(room="plenary", role="participant", name="Sokha Chan", org="aple-kh"),
        "fr-FR",
    )
    es = await page_for(
        browser,
        node.url,
        mint(room="plenary", role="participant", name="Lucía Pérez", org="mais-do"),
        "es-ES",
    )
    ms = timeout(8) * 1000

    # The chair opens the prepared vote (once a node has offered the ballot keys).
    await chair.wait_for_function(
        f"() => HC.state.polls.polls[{VOTE!r}] && HC.state.polls.polls[{VOTE!r}].keys", timeout=ms
    )
    card = chair.locator(f"#poll-{VOTE}")
    await card.get_by_role("button", name="Open", exact=True).click()
    await card.locator(".badge.state-open").wait_for(timeout=ms)

    # The French page votes with the keyboard only.
    fr_card = fr.locator(f"#poll-{VOTE}")
    await fr_card.get_by_text("Approuver le Cadre stratégique 2026–2030").wait_for(timeout=ms)
    # The ballot card says how the ballot is kept secret (the poll's minimum, 3).
    await fr_card.locator(".mix").get_by_text("mêlé à au moins 2 autres").wait_for(timeout=ms)
    await fr_card.locator(".countdown").get_by_text("Clôture dans").wait_for(timeout=ms)
    await fr_card.locator("input[value=yes]").focus()
    await fr.keyboard.press("Space")
    await fr.keyboard.press("Tab")
    await fr.keyboard.press("Enter")
    await fr_card.get_by_text("Vous votez : Oui.").wait_for(timeout=ms)
    focused = await fr.evaluate("document.activeElement && document.activeElement.textContent")
    assert focused == "Confirmer mon vote"
    await fr.keyboard.press("Enter")
    await fr_card.locator(".receipt code").wait_for(timeout=ms)
    fr_tracker = await fr_card.locator(".receipt code").text_content()
    assert fr_tracker and len(fr_tracker) == 19

    # The Spanish page votes for its own member and, as proxy, for SAWA.
    es_card = es.locator(f"#poll-{VOTE}")
    await es_card.get_by_text("Aprobar el Marco Estratégico 2026–2030").wait_for(timeout=ms)
    ballots = es_card.locator(".ballot")
    await ballots.nth(1).get_by_text("(poder)").wait_for(timeout=ms)
    await ballots.nth(0).locator(".mix").get_by_text("al menos 2").wait_for(timeout=ms)
    for i, label in ((0, "No"), (1, "Abstención")):
        ballot = ballots.nth(i)
        await ballot.get_by_label(label, exact=True).check()
        await ballot.get_by_role("button", name="Votar").click()
        await ballot.get_by_role("button", name="Confirmar mi voto").click()
        await ballot.locator(".receipt code").wait_for(timeout=ms)
    # The Spanish member asks its device to keep its own choice after the results.
    await ballots.nth(0).locator("input[type=checkbox]").check()
    # The chair sees the turnout and the quorum gauge (3 of the 10 members; half are
    # needed), and no running count by option: the ballots are sealed.
    await chair.wait_for_function(
        f"() => ((HC.state.polls.polls[{VOTE!r}].progress || {{}}).turnout || {{}}).n === 3",
        timeout=ms,
    )
    await card.locator(".live .turnout").get_by_text("Turnout: 3 of 10").wait_for(timeout=ms)
    assert await card.locator(".live meter").get_attribute("value") == "3"
    assert await card.locator(".live figure").count() == 0
    await (
        card.locator(".live .sealed-note").get_by_text("counted at the close").wait_for(timeout=ms)
    )
    seen = await chair.evaluate(f"JSON.stringify(HC.state.polls.polls[{VOTE!r}])")
    assert '"choice"' not in seen and "blinded" not in seen and 'sealed":"' not in seen
    assert all(
        o["n"] == 0
        for o in await chair.evaluate(f"HC.state.polls.polls[{VOTE!r}].progress.options")
    )
    # The attendance line for the minutes, on the chair's second view: up to date without a
    # click, and the chair is not one of the members' participants.
    await chair.get_by_role("tab", name="Votes, attendance and exports").click()
    await (
        chair.locator("#attendance-line")
        .get_by_text("3 members from 3 countries registered 3 participants")
        .wait_for(timeout=ms)
    )
    await chair.get_by_role("tab", name="Live").click()

    await card.get_by_role("button", name="Close", exact=True).click()
    publish = card.get_by_role("button", name="Publish results")
    await publish.wait_for(timeout=ms)
    await chair.wait_for_function(f"() => HC.state.polls.polls[{VOTE!r}].sealed", timeout=ms)
    await card.get_by_role("button", name="Publish results").click()

    for page, outcome, caption in (
        (chair, "No quorum", "Results"),
        (fr, "Quorum non atteint", "Résultats"),
        (es, "Sin quórum", "Resultados"),
    ):
        chart = page.locator(f"#poll-{VOTE} .results figure.poll-chart")
        await chart.wait_for(timeout=ms)
        assert await chart.locator("figcaption").text_content() == caption
        assert await chart.locator("li").count() == 3
        await page.locator(f"#poll-{VOTE} .outcome").get_by_text(outcome).wait_for(timeout=ms)
    # Each member finds its tracker in the published list (counted as cast); the ballots
    # revealed are listed apart, with no tracker or token beside them.
    await fr.locator(".receipt-found").get_by_text(fr_tracker).wait_for(timeout=ms)
    assert await es.locator(".receipt-found").count() == 2
    assert await chair.locator(f"#poll-{VOTE} .results .trackers li").count() == 3
    assert await chair.locator(f"#poll-{VOTE} .results .revealed li").count() == 3
    # After publication a device forgets the choice, unless its voter asked to keep it.
    stored = """(voter) => JSON.parse(localStorage.getItem(
        `hc.ballot.plenary.strategic-framework.${voter}`))"""
    fr_rec = await fr.evaluate(stored, "aple-kh")
    assert fr_rec["tracker"] == fr_tracker and "choice" not in fr_rec and "seed" not in fr_rec
    assert (await es.evaluate(stored, "mais-do"))["choice"] == ["no"]
    assert "choice" not in await es.evaluate(stored, "sawa-ps")
    widths = await chair.locator(f"#poll-{VOTE} .results .bar").evaluate_all(
        "els => els.map(e => e.style.width)"
    )
    assert widths == ["100%", "100%", "100%"]  # one ballot of weight 1 each
    for page in (chair, fr, es):
        assert page.errors == [], page.errors
    await sawa.close()


async def test_the_page_computes_the_documented_vector(
    browser: Any, start_node: Any, invites: Invites
) -> None:
    """static/polls-crypto.js against docs/voting.md's example vector, as test_blind does."""
    from tests.test_blind import example_vector

    v = example_vector()
    node = await start_node("memory://")
    token = invites.mint(room="plenary", role="participant", name="Sokha Chan", org="aple-kh")
    page = await page_for(browser, node.url, token, "en-GB")
    got = await page.evaluate(
        """async (v) => {
          const C = window.BallotCrypto;
          const ballot = { seed: v.seed, r: v.r };
          return {
            chain: await C.chain(v.seed),
            blinded: await C.blinded(ballot, v.key, v.room, v.poll, v.w),
            sig: await C.unblind(ballot, v.key, v.room, v.poll, v.w, v.signed),
          };
        }""",
        v,
    )
    assert got == {k: v[k] for k in ("chain", "blinded", "sig")}
    # Sealing: the page seals to a poll key, Python opens it (server/seal.py), and both
    # compute the same tracker.
    key = seal.derive_key(v["secret"], v["room"], v["poll"])
    ballot = {
        "token": v["token"],
        "sig": v["sig"],
        "w": v["w"],
        "choice": ["yes"],
        "rev": 0,
        "reveal": None,
    }
    sealed, tracker = await page.evaluate(
        """async ([pub, room, poll, ballot]) => {
          const s = await window.BallotCrypto.seal(pub, room, poll, ballot);
          return [s, await window.BallotCrypto.tracker(s)];
        }""",
        [seal.public_hex(key), v["room"], v["poll"], ballot],
    )
    assert seal.unseal(key, v["room"], v["poll"], sealed) == ballot
    assert tracker == blind.tracker(sealed)
    assert len(sealed) == 2 * (65 + 12 + seal.PAD + 16)
    assert page.errors == []
