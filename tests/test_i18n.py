"""The page's languages: static/i18n/{en,es,fr,ru}.json against the code, and in Chromium.

Every key the pages use (``hc.t("…")``, ``hc.plural("…")``, ``data-t``, ``data-t-label``, the
prefixes of computed keys like ``status.${…}``) is in all four files; no file has a key the
others lack; every key has the same ``{placeholders}`` in all four; plural keys
(``<key>.one`` / ``.few`` / ``.many`` / ``.other``) carry exactly the categories
``Intl.PluralRules`` has for the language (checked against Chromium's own rules below).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from server.node.auth import Invites

from .conftest import NodeFactory, timeout

STATIC = Path(__file__).resolve().parents[1] / "static"
LANGS = ("en", "es", "fr", "ru")
# CLDR's cardinal categories for integers and fractions (Intl.PluralRules(lang)).
CATEGORIES = {
    "en": {"one", "other"},
    "es": {"one", "many", "other"},
    "fr": {"one", "many", "other"},
    "ru": {"one", "few", "many", "other"},
}
ALL_CATEGORIES = {"zero", "one", "two", "few", "many", "other"}
PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def tables() -> dict[str, dict[str, str]]:
    out = {}
    for lang in LANGS:
        data = json.loads((STATIC / "i18n" / f"{lang}.json").read_text("utf-8"))
        assert isinstance(data, dict), lang
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()), lang
        out[lang] = data
    return out


def split(table: dict[str, str]) -> tuple[set[str], dict[str, set[str]]]:
    """Plain keys, and plural keys as base -> the categories present."""
    plain: set[str] = set()
    plural: dict[str, set[str]] = {}
    for key in table:
        base, _, cat = key.rpartition(".")
        if cat in ALL_CATEGORIES and base:
            plural.setdefault(base, set()).add(cat)
        else:
            plain.add(key)
    return plain, plural


def sources() -> str:
    return "\n".join(p.read_text("utf-8") for p in sorted(STATIC.glob("*.js"))) + "\n".join(
        p.read_text("utf-8") for p in sorted(STATIC.glob("*.html"))
    )


def used_keys() -> tuple[set[str], set[str], set[str]]:
    """Literal keys of t() and data-t, literal plural keys, prefixes of computed keys."""
    text = sources()
    plain = set(re.findall(r"\b(?:hc|HC)\.t\(\s*\"([^\"]+)\"", text))
    plain |= set(re.findall(r"data-t(?:-label)?=\"([^\"]+)\"", text))
    plural = set(re.findall(r"\b(?:hc|HC)\.plural\(\s*\"([^\"]+)\"", text))
    prefixes = set(re.findall(r"\b(?:hc|HC)\.t\(\s*`([a-z_.]+)\$\{", text))
    # Ternaries inside t(): hc.t(cond ? "a" : "b").
    for args in re.findall(r"\b(?:hc|HC)\.t\(([^()]*\?[^()]*)\)", text):
        plain |= set(re.findall(r"\"([a-z_]+(?:\.[a-z_0-9]+)+)\"", args))
    return plain, plural, prefixes


def test_the_files_parse_and_hold_the_same_keys() -> None:
    t = tables()
    en_plain, en_plural = split(t["en"])
    assert len(en_plain) > 250
    for lang in LANGS:
        plain, plural = split(t[lang])
        assert plain == en_plain, (lang, plain ^ en_plain)
        assert set(plural) == set(en_plural), (lang, set(plural) ^ set(en_plural))
        for base, cats in plural.items():
            assert cats == CATEGORIES[lang], (lang, base, cats)
        for key, text in t[lang].items():
            assert text.strip(), (lang, key)


def test_placeholders_agree_in_all_languages() -> None:
    t = tables()
    for key, text in t["en"].items():
        base, _, cat = key.rpartition(".")
        family = base if cat in ALL_CATEGORIES else None
        want = set(PLACEHOLDER.findall(text))
        for lang in LANGS:
            keys = [k for k in t[lang] if k.rpartition(".")[0] == family] if family else [key]
            for k in keys:
                assert set(PLACEHOLDER.findall(t[lang][k])) == want, (lang, k, t[lang][k])


KEYLIKE = r"\"([a-z_]+(?:\.[a-z_0-9]+)+)\""


def keylike_literals(en: dict[str, str]) -> set[str]:
    """Every "feature.word" literal in the pages whose first part is a feature of the files,
    except event types (applier keys) and command names (the first argument of command, run,
    act, quiet) -- keys handed through helpers (btn(id, "booth.take", …)) included."""
    text = sources()
    features = {k.split(".")[0] for k in en}
    found = {lit for lit in re.findall(KEYLIKE, text) if lit.split(".")[0] in features}
    events = set(re.findall(KEYLIKE + r"\s*:", text))
    commands = set(re.findall(r"\b(?:command|run|act|quiet)\(\s*" + KEYLIKE, text))
    return found - events - commands


def test_every_key_the_pages_use_exists() -> None:
    t = tables()
    plain, plural, prefixes = used_keys()
    assert {"hand.raise", "ui.language", "poll.cast"} <= plain  # the scan works
    en_plain, en_plural = split(t["en"])
    for lit in keylike_literals(t["en"]) - plural:
        # A key handed through a helper, or a prefix a helper completes ("poll.threshold").
        if lit not in en_plain:
            assert any(k.startswith(lit + ".") for k in en_plain), lit
            prefixes.add(lit + ".")
        else:
            plain.add(lit)
    assert "booth.take" in plain
    assert {"poll.ballots", "booth.listeners"} <= plural
    for lang in LANGS:
        lang_plain, lang_plural = split(t[lang])
        assert plain - lang_plain == set(), (lang, sorted(plain - lang_plain))
        assert plural - set(lang_plural) == set(), (lang, sorted(plural - set(lang_plural)))
        for prefix in prefixes:
            assert any(k.startswith(prefix) for k in lang_plain), (lang, prefix)
    # No count is shown through t() with {n} in a noun phrase: those keys are plural.
    for key in plain:
        assert key not in {"poll.ballots", "booth.listeners", "people.online"}, key


def test_the_modules_carry_no_string_tables() -> None:
    en = tables()["en"]
    for path in STATIC.glob("*.js"):
        text = path.read_text("utf-8")
        pairs = re.findall(r"\"([a-z_]+(?:\.[a-z_0-9]+)+)\"\s*:\s*\"[^\"]*[^a-z_.0-9\"]", text)
        assert [k for k in pairs if k in en] == [], path.name
        assert "POLL_STRINGS" not in text and "strings," not in text, path.name


def test_reviewed_wording() -> None:
    t = tables()
    assert "Воздержаться" in t["ru"]["kind.yesno"]
    assert not any("Воздержался" in v for v in t["ru"].values())
    assert not any("en el aire" in v.lower() for v in t["es"].values())
    assert t["es"]["mic.onair"] == "En antena"


@pytest.mark.browser
async def test_invite_language_sets_the_page_and_plurals(
    start_node: NodeFactory, invites: Invites, browser: Any
) -> None:
    from playwright.async_api import expect

    node = await start_node()
    ms = int(timeout(5) * 1000)
    errors: list[str] = []
    token = invites.mint(room="plenary", role="participant", name="Ana Ruiz", lang="es")
    ctx = await browser.new_context(locale="en-US")
    page = await ctx.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    assert await page.evaluate("navigator.language") == "en-US"
    await page.goto(node.node.link(token, "plenary"))

    # A Spanish invite on an English browser: a Spanish page.
    await expect(page.locator("#agenda-h")).to_have_text("Orden del día", timeout=ms)
    await expect(page.locator("#status")).to_have_text("Conectado", timeout=ms)
    await expect(page.get_by_role("button", name="Levantar la mano")).to_be_visible()
    # The room's title is translated, the assembly's name (a name) is not.
    await expect(page.locator("#room-title")).to_have_text("International Assembly 2026 — Plenario")
    assert await page.evaluate("document.documentElement.lang") == "es"
    assert await page.locator("#ui-lang").input_value() == "es"

    # Changeable: the person picks English; it stays English on this device after a reload.
    await page.locator("#ui-lang").select_option("en")
    await expect(page.locator("#agenda-h")).to_have_text("Agenda", timeout=ms)
    await expect(page.locator("#room-title")).to_have_text("International Assembly 2026 — Plenary")
    await expect(page.locator("#status")).to_have_text("Connected")  # the status follows too
    await page.reload()
    await expect(page.locator("#status")).to_have_text("Connected", timeout=ms)
    await expect(page.get_by_role("button", name="Raise hand")).to_be_visible()

    # Chromium's plural categories are the ones the files carry.
    for lang, cats in CATEGORIES.items():
        got = await page.evaluate(
            "(l) => new Intl.PluralRules(l).resolvedOptions().pluralCategories", lang
        )
        assert set(got) == cats, (lang, got)

    # Russian: 1 / 2 / 5 / 21 ballots, listeners; English 1 / 2.
    await page.locator("#ui-lang").select_option("ru")
    await expect(page.locator("#agenda-h")).not_to_have_text("Agenda", timeout=ms)
    forms = await page.evaluate(
        "() => [1, 2, 5, 21].map((n) => HC.plural('poll.ballots', n))"
        ".concat([1, 3, 11].map((n) => HC.plural('booth.listeners', n)))"
    )
    assert forms == [
        "1 бюллетень",
        "2 бюллетеня",
        "5 бюллетеней",
        "21 бюллетень",
        "1 слушатель",
        "3 слушателя",
        "11 слушателей",
    ]
    await page.locator("#ui-lang").select_option("en")
    await expect(page.locator("#agenda-h")).to_have_text("Agenda", timeout=ms)
    assert await page.evaluate("[1, 2].map((n) => HC.plural('poll.ballots', n))") == [
        "1 ballot",
        "2 ballots",
    ]
    # Times: 24-hour in every language (one convention), through Intl.DateTimeFormat.
    for lang in LANGS:
        await page.locator("#ui-lang").select_option(lang)
        got = await page.evaluate("HC.time('2026-01-05T15:07:00Z', {timeZone: 'UTC'})")
        assert got == "15:07", (lang, got)
    # No invite at all: the page says so in the browser's language, not as a bare key.
    fresh = await (await browser.new_context(locale="fr-FR")).new_page()
    await fresh.goto(node.node.link(token, "plenary").split("#")[0])
    await expect(fresh.locator("#status")).to_have_text(
        "Ouvrez votre lien d'invitation personnel", timeout=ms
    )
    assert errors == []
