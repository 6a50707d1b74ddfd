"""server/wire.py: the generated description of events and commands, and its drift check.

server/events.py comes from another branch; these tests describe two small events of their
own (``person.joined`` with a nested record, ``hand.lowered``) and check them against what
the real fold produces. The last tests compare the committed docs with the generator.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired, Required, TypedDict

import jsonschema
import pytest

from scripts import wire as script
from server import fold, protocol, wire
from server.types import SYSTEM, Actor, RoomConfig

ROOT = Path(__file__).resolve().parent.parent


class Person(TypedDict):
    """Someone in the room, with their open connections."""

    pid: str
    name: str
    role: Literal["participant", "panelist", "interpreter", "captioner", "moderator"]
    org: str | None
    conns: list[str]
    since: int
    booth: NotRequired[str]


class PersonJoined(TypedDict):
    """A connection opened; ``person`` is the whole record as the state holds it."""

    type: Literal["person.joined"]
    person: Person
    conn: Annotated[str, "the connection that joined"]


class HandLowered(TypedDict):
    """A raised hand went down.

    To: everyone in the room
    """

    type: Literal["hand.lowered"]
    pid: str
    by: str | None
    to: NotRequired[list[str]]


def events_module(**table: type) -> types.ModuleType:
    module = types.ModuleType("fixture_events")
    module.EVENT_TYPES = table or {  # type: ignore[attr-defined]
        "person.joined": PersonJoined,
        "hand.lowered": HandLowered,
    }
    return module


def generated() -> tuple[dict[str, Any], str]:
    events = wire.event_docs(events_module())
    commands = wire.command_docs()
    return wire.schema(events, commands), wire.markdown(events, commands)


def folded(
    cmd: str, args: dict[str, Any], actor: Actor, raised: bool = False
) -> list[dict[str, Any]]:
    """The events the real fold makes of one command, in a room where Ana is present."""
    state = fold.new_state(RoomConfig(id="plenary", title="Plenary"))
    ana = {"pid": "ana", "name": "Ana", "role": "participant", "conn": "c1"}
    entries = [(Actor("node", SYSTEM), "join", ana)]
    if raised:
        entries.append((Actor("ana", "participant", "c1"), "hand.raise", {}))
    entries.append((actor, cmd, args))
    outcome = None
    for i, (who, name, data) in enumerate(entries):
        entry = {"cid": f"c{i}", "actor": who.to_wire(), "cmd": name, "args": data, "ts": i}
        outcome = fold.fold(state, f"{i + 1}-0", entry)
        assert outcome.error is None, outcome.error
    assert outcome is not None
    return outcome.events


def test_the_schema_is_valid_and_real_events_match_it() -> None:
    schema, _ = generated()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    node = Actor("node", SYSTEM)
    (joined,) = folded(
        "join", {"pid": "bo", "name": "Bo", "role": "panelist", "conn": "c2", "booth": "fr"}, node
    )
    validator.validate(joined)
    (lowered,) = folded("hand.lower", {}, Actor("ana", "participant", "c1"), raised=True)
    assert lowered == {"type": "hand.lowered", "pid": "ana", "by": "ana"}
    validator.validate(lowered)
    validator.validate({**lowered, "by": None, "to": ["role:moderator"]})
    # What a drifting server would send is refused, each for its own reason.
    bad = [
        {**joined, "person": {**joined["person"], "conns": "c2"}},  # conns as a string
        {k: v for k, v in joined.items() if k != "conn"},  # the joining conn missing
        {**joined, "person": {**joined["person"], "role": "chair"}},  # an unknown role
        {**lowered, "type": "hand.lowerd"},  # an unknown type
        {"type": "hand.lowered", "pid": "ana"},  # by missing (it may be null, not absent)
    ]
    for event in bad:
        assert not validator.is_valid(event), event


def test_fields_required_optional_described() -> None:
    schema, _ = generated()
    lowered = schema["$defs"]["hand.lowered"]
    assert lowered["required"] == ["type", "pid", "by"]  # `to` is NotRequired
    assert lowered["properties"]["by"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert lowered["x-audience"] == "everyone in the room"
    joined = schema["$defs"]["person.joined"]
    assert joined["x-audience"] == "everyone (no `to`)"  # the hub sends it to all
    assert joined["properties"]["person"] == {"$ref": "#/$defs/Person"}
    assert joined["properties"]["conn"]["description"] == "the connection that joined"
    person = schema["$defs"]["Person"]
    assert "booth" not in person["required"] and "conns" in person["required"]
    assert person["properties"]["conns"] == {"type": "array", "items": {"type": "string"}}
    assert person["description"] == "Someone in the room, with their open connections."


def test_the_markdown_has_one_row_per_event_and_command() -> None:
    _, text = generated()
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| `")}
    assert "`person`: [Person](#person), `conn`: string" in rows["`person.joined`"]
    assert "| everyone (no `to`) | core |" in rows["`person.joined`"]
    assert (
        "`by`: string or null, `to?`: [string] | everyone in the room |" in rows["`hand.lowered`"]
    )
    assert "#### Person" in text and "`booth?`: string" in text
    # The fold's own events that the fixture does not describe are named, not hidden.
    assert "Applied by the fold but not described:" in text and "hand.raised" in text
    for name, command in fold.RULES.commands.items():
        assert f"`{name}`" in rows, name
        roles = next(c.roles for c in wire.command_docs() if c.name == name)
        assert set(roles) == set(command.roles)
        assert f" | {', '.join(roles)} | " in rows[f"`{name}`"]


def test_a_command_frame_names_a_client_command() -> None:
    schema, _ = generated()
    frame = jsonschema.Draft202012Validator(schema["$defs"]["CommandFrame"])
    frame.validate({"type": "command", "cid": "1", "name": "hand.raise", "args": {}})
    assert not frame.is_valid({"type": "command", "cid": "1", "name": "join", "args": {}})
    assert not frame.is_valid({"type": "command", "cid": "x" * 65, "name": "hand.raise"})
    assert schema["x-command-roles"]["join"] == [SYSTEM]


def test_a_type_that_contradicts_its_key_is_an_error() -> None:
    with pytest.raises(ValueError, match="hand.raised"):
        wire.event_docs(events_module(**{"hand.raised": HandLowered}))
    with pytest.raises(TypeError, match="not a TypedDict"):
        wire.event_docs(events_module(**{"hand.raised": dict}))


def test_stale_names_the_files_that_differ(tmp_path: Path) -> None:
    files = wire.generate(events_module())
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert script.stale(files, tmp_path) == []
    (tmp_path / wire.MARKDOWN_FILE).write_text("edited by hand\n", encoding="utf-8")
    assert script.stale(files, tmp_path) == [wire.MARKDOWN_FILE]
    assert protocol.pretty({"a": 1}) == '{\n  "a": 1\n}\n'


def test_the_committed_docs_are_what_the_generator_writes_now() -> None:
    files = wire.generate(script.events_module())
    names = script.stale(files)
    assert not names, f"{', '.join(names)} out of date: run {wire.REGENERATE} and commit"


class Draft(TypedDict, total=False):
    """A record whose keys are optional unless marked."""

    id: Required[str]
    note: str


def test_totality_and_required_marks() -> None:
    fields = wire._fields(Draft)
    assert {name: required for name, (_, required, _) in fields.items()} == {
        "id": True,
        "note": False,
    }
