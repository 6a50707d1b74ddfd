"""One description of the wire, generated: room events and commands. Pure.

The events come from the TypedDicts of ``server/events.py`` (``EVENT_TYPES``: the event's
``type`` string → its TypedDict), the commands from the fold's table (``fold.RULES.slices``: name,
slice, roles). :func:`schema` builds a JSON Schema (2020-12) and :func:`markdown` a page with
one table row per event and per command; ``scripts/wire.py`` writes them to
``docs/events.schema.json`` and ``docs/events.md``, and ``tests/test_wire_schema.py`` fails
when the committed files differ from what this module produces now.

Who receives an event: ``AUDIENCE[type]`` in the events module if it has one, else a line
``To: …`` in the TypedDict's docstring, else *everyone (no ``to``)* when the TypedDict has
no ``to`` key (the hub sends such an event to every connection of the room) and *as ``to``
names* when it has one. So a TypedDict must declare ``to`` (``NotRequired``) on every event
that may carry it.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import fold, protocol
from .types import ROLES, SYSTEM, Command

REGENERATE = ".venv/bin/python scripts/wire.py"
"""The command that writes the generated files again (printed by the drift test)."""

SCHEMA_FILE = "docs/events.schema.json"
MARKDOWN_FILE = "docs/events.md"
SCHEMA_ID = "urn:hemicycle:events"
SECTIONS = {
    "core": ("Room commands", "protocol.md#room-commands-and-events-core-slice-serverroomspy"),
    "channels": ("Channels and booths", "protocol.md#channels-and-booths"),
    "polls": ("Polls and votes", "protocol.md#polls-and-votes"),
    "audio": ("Audio", "protocol.md#audio-webrtc"),
    "fold": ("Time-based rules", "architecture.md#time-based-rules"),
}
"""Where docs/protocol.md gives each slice's command arguments and refusals."""


@dataclass(frozen=True)
class EventDoc:
    name: str
    cls: type
    audience: str
    slice: str | None
    """The slice whose ``apply`` folds it (``None``: not applied to the state)."""


@dataclass(frozen=True)
class CommandDoc:
    name: str
    slice: str
    roles: tuple[str, ...]


# --- reading the sources ---------------------------------------------------------------------


def event_docs(module: Any) -> list[EventDoc]:
    """The events a module describes (``EVENT_TYPES``), in its order."""
    table: Mapping[str, type] = getattr(module, "EVENT_TYPES", None) or {}
    if not table:
        raise ValueError(f"{module.__name__} has no EVENT_TYPES")
    audiences: Mapping[str, str] = getattr(module, "AUDIENCE", {})
    applied = {t: s.name for s in fold.RULES.slices for t in s.apply}
    out = []
    for name, cls in table.items():
        if not typing.is_typeddict(cls):
            raise TypeError(f"EVENT_TYPES[{name!r}] is {cls!r}, not a TypedDict")
        fields = _fields(cls)
        declared = fields.get("type")
        if declared is not None and _literal_values(declared[0]) not in (None, (name,)):
            raise ValueError(f"{cls.__name__}.type does not say {name!r}")
        out.append(EventDoc(name, cls, _audience(name, cls, audiences), applied.get(name)))
    return out


def undescribed(events: Iterable[EventDoc]) -> list[str]:
    """Event types the fold applies that no TypedDict describes."""
    described = {e.name for e in events}
    return sorted(t for s in fold.RULES.slices for t in s.apply if t not in described)


def command_docs() -> list[CommandDoc]:
    """Every command of the fold's table, slice by slice, ``tick`` last."""
    pairs = [(s.name, c) for s in fold.RULES.slices for c in s.commands.values()]
    pairs.append(("fold", fold.RULES.commands["tick"]))
    return [_command_doc(slice_name, c) for slice_name, c in pairs]


def _command_doc(slice_name: str, command: Command) -> CommandDoc:
    order = [*ROLES, SYSTEM]
    roles = tuple(sorted(command.roles, key=lambda r: order.index(r) if r in order else 99))
    return CommandDoc(command.name, slice_name, roles)


def _audience(name: str, cls: type, audiences: Mapping[str, str]) -> str:
    if name in audiences:
        return audiences[name]
    for line in (cls.__doc__ or "").splitlines():
        if line.strip().lower().startswith("to:"):
            return line.strip()[3:].strip()
    return "as `to` names" if "to" in _fields(cls) else "everyone (no `to`)"


def _first_paragraph(doc: str | None) -> str:
    if not doc:
        return ""
    lines = []
    for line in doc.strip().splitlines():
        if not line.strip():
            break
        if line.strip().lower().startswith("to:"):
            continue
        lines.append(line.strip())
    return " ".join(lines)


# --- types ----------------------------------------------------------------------------------

_WRAPPERS = {typing.NotRequired, typing.Required}


def _fields(cls: type) -> dict[str, tuple[Any, bool, str]]:
    """``{name: (type, required, description)}`` of a TypedDict.

    Required-ness: ``NotRequired[…]``/``Required[…]`` when the annotation says so, else the
    defining class's ``total`` (``__required_keys__``). Python 3.11 does not see those
    wrappers in ``__required_keys__`` when annotations are postponed, hence both.
    """
    hints = typing.get_type_hints(cls, include_extras=True)
    by_total: frozenset[str] = getattr(cls, "__required_keys__", frozenset(hints))
    out = {}
    for name, tp in hints.items():
        required, description = name in by_total, ""
        while True:
            origin = typing.get_origin(tp)
            if origin in _WRAPPERS:
                required = origin is typing.Required
                tp = typing.get_args(tp)[0]
            elif origin is typing.Annotated:
                tp, *meta = typing.get_args(tp)
                description = " ".join(m for m in meta if isinstance(m, str)) or description
            else:
                break
        out[name] = (tp, required, description)
    return out


def _literal_values(tp: Any) -> tuple[Any, ...] | None:
    return typing.get_args(tp) if typing.get_origin(tp) is typing.Literal else None


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(tp)
    return None


def _is_enum(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, enum.Enum)


class _Schemas:
    """JSON Schema of Python types; TypedDicts other than events go to ``$defs``."""

    def __init__(self) -> None:
        self.defs: dict[str, Any] = {}

    def of(self, tp: Any) -> dict[str, Any]:
        if tp is Any or tp is object:
            return {}
        if tp is None or tp is type(None):
            return {"type": "null"}
        simple = {str: "string", bool: "boolean", int: "integer", float: "number"}
        if tp in simple:
            return {"type": simple[tp]}
        if _is_enum(tp):
            return {"enum": [m.value for m in tp]}
        literal = _literal_values(tp)
        if literal is not None:
            return {"const": literal[0]} if len(literal) == 1 else {"enum": list(literal)}
        union = _union_args(tp)
        if union is not None:
            return {"anyOf": [self.of(a) for a in union]}
        if typing.is_typeddict(tp):
            if tp.__name__ not in self.defs:
                self.defs[tp.__name__] = {}  # a placeholder: recursive records end here
                self.defs[tp.__name__] = self.record(tp)
            return {"$ref": f"#/$defs/{tp.__name__}"}
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in (list, set, frozenset, Sequence) or (origin is tuple and args[-1:] == (...,)):
            return {"type": "array", "items": self.of(args[0]) if args else {}}
        if origin is tuple:
            items = [self.of(a) for a in args]
            return {"type": "array", "prefixItems": items, "items": False}
        if origin in (dict, Mapping):
            return {"type": "object", "additionalProperties": self.of(args[1]) if args else {}}
        if tp in (list, dict):
            return {"type": "array"} if tp is list else {"type": "object"}
        raise TypeError(f"no JSON Schema for {tp!r}")

    def record(self, cls: type, type_name: str | None = None) -> dict[str, Any]:
        fields = _fields(cls)
        props: dict[str, Any] = {}
        if type_name is not None:
            props["type"] = {"const": type_name}
        for name, (tp, _required, description) in fields.items():
            if name == "type" and type_name is not None:
                continue
            props[name] = {**self.of(tp), **({"description": description} if description else {})}
        required = [n for n, (_, req, _) in fields.items() if req]
        if type_name is not None and "type" not in required:
            required.insert(0, "type")
        out: dict[str, Any] = {"type": "object"}
        doc = _first_paragraph(cls.__doc__)
        if doc:
            out["description"] = doc
        out["properties"] = props
        out["required"] = required
        return out


def _text(tp: Any) -> str:
    """A short name of a type for the Markdown tables."""
    if tp is Any or tp is object:
        return "any"
    if tp is None or tp is type(None):
        return "null"
    simple = {str: "string", bool: "bool", int: "int", float: "number"}
    if tp in simple:
        return simple[tp]
    if _is_enum(tp):
        return " or ".join(f'"{m.value}"' for m in tp)
    literal = _literal_values(tp)
    if literal is not None:
        return " or ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in literal)
    union = _union_args(tp)
    if union is not None:
        return " or ".join(_text(a) for a in union)
    if typing.is_typeddict(tp):
        return f"[{tp.__name__}](#{tp.__name__.lower()})"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (list, set, frozenset, Sequence) or (origin is tuple and args[-1:] == (...,)):
        return f"[{_text(args[0])}]" if args else "[…]"
    if origin is tuple:
        return "[" + ", ".join(_text(a) for a in args) + "]"
    if origin in (dict, Mapping):
        return f"{{{_text(args[0])}: {_text(args[1])}}}" if args else "{…}"
    if tp in (list, dict):
        return "[…]" if tp is list else "{…}"
    return getattr(tp, "__name__", repr(tp))


def _field_list(cls: type, skip_type: bool) -> str:
    parts = []
    for name, (tp, required, _) in _fields(cls).items():
        if skip_type and name == "type":
            continue
        parts.append(f"`{name}{'' if required else '?'}`: {_text(tp)}")
    return ", ".join(parts) or "–"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# --- the two outputs ------------------------------------------------------------------------


def schema(events: Sequence[EventDoc] | None, commands: Sequence[CommandDoc]) -> dict[str, Any]:
    """The JSON Schema: an event is one of ``$defs/<type>``; ``$defs/CommandFrame`` names one
    of the commands a client may give (their arguments: docs/protocol.md)."""
    schemas = _Schemas()
    event_defs = {e.name: schemas.record(e.cls, e.name) for e in events or ()}
    for e in events or ():
        event_defs[e.name]["x-audience"] = e.audience
    client_names = [c.name for c in commands if c.roles != (SYSTEM,)]
    command = {
        "type": "object",
        "description": "A client's command frame; exactly one reply with the same cid.",
        "properties": {
            "type": {"const": "command"},
            "cid": {"type": "string", "maxLength": 64},
            "name": {"enum": client_names},
            "args": {"type": "object"},
            "room": {"type": "string"},
        },
        "required": ["type", "cid", "name"],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "hemicycle room events",
        "description": (
            f"Generated by {REGENERATE} from server/events.py and the fold's command table; "
            "do not edit. An event as it travels in an `events` frame; `$defs` holds one "
            "schema per event type (by its type string), the records they share (by name) "
            "and the client's `CommandFrame`."
        ),
        **({"oneOf": [{"$ref": f"#/$defs/{name}"} for name in event_defs]} if event_defs else {}),
        "$defs": {**event_defs, **dict(sorted(schemas.defs.items())), "CommandFrame": command},
        "x-command-roles": {c.name: list(c.roles) for c in commands},
    }


def markdown(events: Sequence[EventDoc] | None, commands: Sequence[CommandDoc]) -> str:
    """docs/events.md: one row per event and per command."""
    out = [
        "# Events and commands (generated)",
        "",
        f"Generated by `{REGENERATE}` from `server/events.py` and the fold's command table;",
        "do not edit by hand. The same in JSON Schema: [events.schema.json](events.schema.json).",
        "How these travel (frames, replies, errors): [protocol.md](protocol.md).",
        "",
        "## Events (server → client, in `events` frames)",
        "",
    ]
    records: dict[str, type] = {}
    if events is None:
        out.append("`server/events.py` is not there yet: no event is described.")
    else:
        out += ["| type | fields | to | slice | what |", "|---|---|---|---|---|"]
        for e in events:
            _collect(e.cls, records)
            row = [
                f"`{e.name}`",
                _field_list(e.cls, skip_type=True),
                e.audience,
                e.slice or "–",
                _first_paragraph(e.cls.__doc__),
            ]
            out.append("| " + " | ".join(_cell(c) for c in row) + " |")
        missing = undescribed(events)
        if missing:
            out += ["", "Applied by the fold but not described: " + ", ".join(missing) + "."]
    if records:
        out += ["", "### Records", ""]
        for name, cls in sorted(records.items()):
            out += [f"#### {name}", ""]
            doc = _first_paragraph(cls.__doc__)
            out += [_field_list(cls, skip_type=False) + ("" if not doc else f". {doc}"), ""]
        out.pop()
    out += [
        "",
        "## Commands (client → server, `command` frames)",
        "",
        "`system` commands are given by the nodes themselves, never accepted from a client.",
        "",
        "| name | slice | roles | arguments, events, refusals |",
        "|---|---|---|---|",
    ]
    for c in commands:
        title, link = SECTIONS.get(c.slice, (c.slice, "protocol.md"))
        row = [f"`{c.name}`", c.slice, ", ".join(c.roles), f"[{title}]({link})"]
        out.append("| " + " | ".join(_cell(x) for x in row) + " |")
    return "\n".join(out) + "\n"


def _collect(cls: type, records: dict[str, type]) -> None:
    """The TypedDicts nested in an event's fields, for the Records section."""
    for tp, _, _ in _fields(cls).values():
        for inner in _walk(tp):
            if typing.is_typeddict(inner) and inner.__name__ not in records:
                records[inner.__name__] = inner
                _collect(inner, records)


def _walk(tp: Any) -> Iterable[Any]:
    """``tp`` and every type inside it (not the values of a ``Literal``)."""
    yield tp
    if _literal_values(tp) is None:
        for arg in typing.get_args(tp):
            if arg is not ...:
                yield from _walk(arg)


def generate(events_module: Any | None) -> dict[str, str]:
    """``{path: text}`` of both generated files (``None``: no events module yet)."""
    events = event_docs(events_module) if events_module is not None else None
    commands = command_docs()
    return {
        SCHEMA_FILE: protocol.pretty(schema(events, commands)),
        MARKDOWN_FILE: markdown(events, commands),
    }
