"""Poll definitions: the question, options and rules of one poll, checked and normalised.

One checker for both sources: ``[[rooms.polls]]`` tables in the assembly file (a bad one is
a :class:`ConfigError` at start, naming the key) and ``poll.create``/``poll.update`` from
the chair's builder (a ``BadArgs`` naming the field). Pure; no I/O.

A normalised definition::

    {id?, question: {lang: text}, kind: single|multiple|yesno, max,
     options: [{id, text: {lang: text}}], electorate: present|roll, secret, change,
     seconds: int|None, quorum: {of: roll|present, fraction, weighted}|None,
     threshold: {rule: simple|two_thirds|absolute, abstentions: excluded|counted}, mix}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from .errors import BadArgs, ConfigError
from .state import ConfigPoll, PollDefinition, PollOption, Quorum, Threshold, Voting

KINDS = ("single", "multiple", "yesno")
ELECTORATES = ("present", "roll")
RULES = ("simple", "two_thirds", "absolute")
ABSTENTIONS = ("excluded", "counted")
QUORUM_OF = ("roll", "present")
POLL_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
LANG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
MAX_OPTIONS = 20
MAX_TEXT = 300
MAX_SECONDS = 24 * 3600
MAX_MIX = 100
DEFAULT_MIX = 3
MIN_MIX = 3
"""A secret poll's result lists its ballots only if at least this many (or the poll's
``mix``, if higher) were counted: a ballot is never shown among fewer."""

YESNO: list[PollOption] = [
    {"id": "yes", "text": {"en": "Yes", "es": "Sí", "fr": "Oui", "ru": "За"}},
    {"id": "no", "text": {"en": "No", "es": "No", "fr": "Non", "ru": "Против"}},
    {
        "id": "abstain",
        "text": {"en": "Abstain", "es": "Abstención", "fr": "Abstention", "ru": "Воздержаться"},
    },
]


class DefError(Exception):
    """A definition problem at ``key`` (dotted path inside the definition)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key, self.problem = key, problem


def _texts(value: Any, key: str, floor: str) -> dict[str, str]:
    if isinstance(value, str):
        value = {floor: value}
    if not isinstance(value, Mapping) or not value:
        raise DefError(key, "expected a text or a table of texts by language")
    out: dict[str, str] = {}
    for lang, text in value.items():
        if not isinstance(lang, str) or not LANG.match(lang):
            raise DefError(f"{key}.{lang}", "not a language code")
        if not isinstance(text, str) or not text.strip():
            raise DefError(f"{key}.{lang}", "expected a non-empty text")
        if len(text) > MAX_TEXT:
            raise DefError(f"{key}.{lang}", f"longer than {MAX_TEXT} characters")
        out[lang] = text.strip()
    if floor not in out:
        raise DefError(key, f"needs the floor language {floor!r}")
    return out


def _pick(
    data: Mapping[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    default: Any,
    choices: tuple[str, ...] | None = None,
    prefix: str = "",
) -> Any:
    value = data.get(key)
    if value is None:  # missing or null: the default (a null kind is a single choice)
        value = default
    where = f"{prefix}.{key}" if prefix else key
    if value is None:
        return None
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        raise DefError(where, f"has the wrong type ({type(value).__name__})")
    if choices is not None and value not in choices:
        raise DefError(where, f"must be one of {', '.join(choices)}")
    return value


def poll_id(data: Mapping[str, Any]) -> str:
    """A prepared poll's ``id``; raises :class:`DefError`."""
    pid = _pick(data, "id", str, None)
    if pid is None or not POLL_ID.match(pid):
        raise DefError("id", "lower-case letters, digits, - and _ (up to 40)")
    return str(pid)


FIELDS = (
    "question",
    "kind",
    "max",
    "options",
    "electorate",
    "secret",
    "change",
    "seconds",
    "quorum",
    "threshold",
    "mix",
)
"""The keys of a poll's definition (besides its ``id``), in the order they are shown."""


def normalise(data: Any, floor: str = "en") -> PollDefinition:
    """The checked, complete form of a definition (an ``id`` is allowed and left out:
    :func:`from_config` reads it); raises :class:`DefError`."""
    if not isinstance(data, Mapping):
        raise DefError("poll", "expected a table")
    known = {"id", *FIELDS}
    unknown = sorted(set(data) - known)
    if unknown:
        raise DefError(unknown[0], "unknown key")
    question = _texts(data.get("question"), "question", floor)
    kind: str = _pick(data, "kind", str, "single", KINDS)
    options = data.get("options")
    opts: list[PollOption] = []
    if kind == "yesno":
        if options is not None:
            raise DefError("options", "a yes/no/abstain poll has its own options")
        opts = [{"id": o["id"], "text": dict(o["text"])} for o in YESNO]
    else:
        if not isinstance(options, list) or not 2 <= len(options) <= MAX_OPTIONS:
            raise DefError("options", f"expected a list of 2 to {MAX_OPTIONS} options")
        for i, opt in enumerate(options):
            where = f"options[{i}]"
            if isinstance(opt, str) or (isinstance(opt, Mapping) and "text" not in opt):
                opt = {"text": opt}
            if not isinstance(opt, Mapping):
                raise DefError(where, "expected a text or a table with 'text'")
            oid = opt.get("id", f"o{i + 1}")
            if not isinstance(oid, str) or not POLL_ID.match(oid):
                raise DefError(f"{where}.id", "lower-case letters, digits, - and _")
            opts.append({"id": oid, "text": _texts(opt["text"], f"{where}.text", floor)})
        if len({o["id"] for o in opts}) != len(opts):
            raise DefError("options", "two options share an id")
    if kind == "multiple":
        most: int = _pick(data, "max", int, len(opts))
        if not 1 <= most <= len(opts):
            raise DefError("max", f"must be between 1 and {len(opts)}")
    elif "max" in data:
        raise DefError("max", "only a multiple-choice poll has a maximum")
    else:
        most = 1
    electorate: str = _pick(data, "electorate", str, "present", ELECTORATES)
    secret: bool = _pick(data, "secret", bool, False)
    change: bool = _pick(data, "change", bool, False)
    seconds: int | None = _pick(data, "seconds", int, None)
    if seconds is not None and not 5 <= seconds <= MAX_SECONDS:
        raise DefError("seconds", f"a timer runs 5 to {MAX_SECONDS} seconds")
    quorum = _quorum(data.get("quorum"))
    threshold = _threshold(data.get("threshold"), kind)
    mix: int = _pick(data, "mix", int, DEFAULT_MIX if secret else 1)
    if not 1 <= mix <= MAX_MIX:
        raise DefError("mix", f"must be between 1 and {MAX_MIX}")
    if secret and mix < MIN_MIX:
        raise DefError(
            "mix",
            f"a secret ballot is revealed only among at least {MIN_MIX} ballots "
            f"(docs/voting.md, 'The minimum')",
        )
    if mix > 1 and not secret:
        raise DefError("mix", "only a secret ballot is mixed")
    return {
        "question": question,
        "kind": kind,
        "max": most,
        "options": opts,
        "electorate": electorate,
        "secret": secret,
        "change": change,
        "seconds": seconds,
        "quorum": quorum,
        "threshold": threshold,
        "mix": mix,
    }


def _quorum(value: Any) -> Quorum | None:
    if value is None or value is False:
        return None
    if not isinstance(value, Mapping):
        raise DefError("quorum", 'expected a table like { of = "roll", fraction = 0.5 }')
    unknown = sorted(set(value) - {"of", "fraction", "weighted"})
    if unknown:
        raise DefError(f"quorum.{unknown[0]}", "unknown key")
    of = _pick(value, "of", str, "roll", QUORUM_OF, "quorum")
    fraction = value.get("fraction", 0.5)
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise DefError("quorum.fraction", "expected a number")
    if not 0 < fraction <= 1:
        raise DefError("quorum.fraction", "must be above 0 and at most 1")
    weighted = value.get("weighted", False)
    if not isinstance(weighted, bool):
        raise DefError("quorum.weighted", "expected true or false")
    return {"of": of, "fraction": fraction_text(fraction), "weighted": weighted}


def fraction_text(value: float | int | str) -> str:
    """A fraction kept exactly as text (``"1/2"``), so every node computes the same."""
    return str(Fraction(str(value)).limit_denominator(10_000))


def _threshold(value: Any, kind: str) -> Threshold:
    if value is None:
        value = {}
    if isinstance(value, str):
        value = {"rule": value}
    if not isinstance(value, Mapping):
        raise DefError("threshold", "expected a rule name or a table")
    unknown = sorted(set(value) - {"rule", "abstentions"})
    if unknown:
        raise DefError(f"threshold.{unknown[0]}", "unknown key")
    rule = _pick(value, "rule", str, "simple", RULES, "threshold")
    abstentions = _pick(value, "abstentions", str, "excluded", ABSTENTIONS, "threshold")
    return {"rule": rule, "abstentions": abstentions}


def for_command(data: Any, floor: str) -> PollDefinition:
    """``normalise`` for the live builder: problems become ``BadArgs``."""
    try:
        return normalise(data, floor)
    except DefError as exc:
        raise BadArgs(f"poll {exc.key}: {exc.problem}") from None


def from_config(room: str, extra: Mapping[str, Any], floor: str) -> list[ConfigPoll]:
    """The prepared polls of a room (``[[rooms.polls]]``); raises :class:`ConfigError`."""
    tables = extra.get("polls", [])
    if not isinstance(tables, list):
        raise ConfigError("assembly", f"rooms[{room}].polls", "expected [[rooms.polls]] tables")
    out: list[ConfigPoll] = []
    for i, table in enumerate(tables):
        try:
            definition = normalise(table, floor)  # a table, with no unknown key
            poll: ConfigPoll = {"id": poll_id(table), **definition}
        except DefError as exc:
            raise ConfigError(
                "assembly", f"rooms[{room}].polls[{i}].{exc.key}", exc.problem
            ) from None
        if any(p["id"] == poll["id"] for p in out):
            raise ConfigError(
                "assembly", f"rooms[{room}].polls[{i}].id", f"poll {poll['id']!r} is defined twice"
            )
        out.append(poll)
    return out


KEY_BITS = (2048, 3072)
"""The sizes a room's ballot keys may have (``voting.key_bits``)."""


def voting_settings(room: str, extra: Mapping[str, Any]) -> Voting:
    """The room's ``voting`` table: ``proxy_chains`` (false), ``max_proxies`` (none)."""
    table = extra.get("voting", {})
    where = f"rooms[{room}].voting"
    if not isinstance(table, Mapping):
        raise ConfigError("assembly", where, "expected a table")
    unknown = sorted(set(table) - {"proxy_chains", "max_proxies", "key_bits"})
    if unknown:
        raise ConfigError("assembly", f"{where}.{unknown[0]}", "unknown key")
    chains = table.get("proxy_chains", False)
    if not isinstance(chains, bool):
        raise ConfigError("assembly", f"{where}.proxy_chains", "expected true or false")
    most = table.get("max_proxies")
    if most is not None and (isinstance(most, bool) or not isinstance(most, int) or most < 1):
        raise ConfigError("assembly", f"{where}.max_proxies", "expected a positive integer")
    bits = table.get("key_bits", 2048)
    if bits not in KEY_BITS:  # below 2048 bits RSA is no longer a safe margin (NIST SP 800-57)
        raise ConfigError(
            "assembly", f"{where}.key_bits", f"at least 2048 bits: {bits!r} is not 2048 or 3072"
        )
    return {"proxy_chains": chains, "max_proxies": most, "key_bits": bits}
