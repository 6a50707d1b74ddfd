"""A runtime check that plain data has the shape a ``TypedDict`` (or any hint) declares.

Walks ``typing.get_type_hints``: TypedDicts (required keys present, no unknown key),
``Literal``, unions and optionals, ``list[...]``, ``dict[...]`` and the scalars. Used by the
pure tests on every event the fold produces and on the state after each entry, so the
types in server/events.py and server/state.py are checked against what the code does.
"""

from __future__ import annotations

import functools
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints, is_typeddict

from server.events import EVENT_TYPES
from server.state import State


class ShapeError(AssertionError):
    pass


def check(value: Any, hint: Any, path: str = "$") -> None:
    """Raise :class:`ShapeError` naming the path where ``value`` departs from ``hint``."""
    problem = _problem(value, hint)
    if problem is not None:
        raise ShapeError(path + problem)


def _problem(value: Any, hint: Any) -> str | None:
    """Why ``value`` is not a ``hint`` (``.key[3]: …``), or ``None``. Nothing is formatted
    on the way down: the pure tests run this on the whole state after every entry."""
    if hint is Any or hint is object:
        return None
    if hint is None or hint is type(None):
        return None if value is None else f": expected null, got {value!r}"
    if hint is str or hint is bool or hint is float:
        return None if isinstance(value, hint) else f": expected {hint.__name__}, got {value!r}"
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return f": expected an integer, got {value!r}"
        return None
    if is_typeddict(hint):
        return _typeddict_problem(value, hint)
    origin, args = _split(hint)
    if origin is Literal:
        return None if value in args else f": {value!r} is not one of {args}"
    if origin is Union:
        problems = []
        for option in args:
            problem = _problem(value, option)
            if problem is None:
                return None
            problems.append(problem)
        return " / ".join(problems)
    if origin is list:
        if not isinstance(value, list):
            return f": expected a list, got {type(value).__name__}"
        for i, x in enumerate(value):
            problem = _problem(x, args[0])
            if problem is not None:
                return f"[{i}]{problem}"
        return None
    if origin is dict:
        if not isinstance(value, dict):
            return f": expected a map, got {type(value).__name__}"
        for k, v in value.items():
            problem = _problem(k, args[0])
            if problem is not None:
                return f".<key {k!r}>{problem}"
            problem = _problem(v, args[1])
            if problem is not None:
                return f".{k}{problem}"
        return None
    return f": no rule for the hint {hint!r}"


@functools.cache
def _split(hint: Any) -> tuple[Any, tuple[Any, ...]]:
    origin = get_origin(hint)
    return (Union if origin is types.UnionType else origin), get_args(hint)


@functools.cache
def _fields(hint: Any) -> dict[str, Any]:
    return get_type_hints(hint)


def _typeddict_problem(value: Any, hint: Any) -> str | None:
    if not isinstance(value, dict):
        return f": expected a {hint.__name__} map, got {type(value).__name__}"
    fields = _fields(hint)
    for key in hint.__required_keys__:
        if key not in value:
            return f": {hint.__name__} lacks {key!r}"
    for key, x in value.items():
        field_hint = fields.get(key)
        if field_hint is None:
            return f": {hint.__name__} has no key {key!r}"
        problem = _problem(x, field_hint)
        if problem is not None:
            return f".{key}{problem}"
    return None


def check_event(event: Any) -> None:
    """``event`` is one of the events of server/events.py, in its declared shape."""
    kind = event.get("type") if isinstance(event, dict) else None
    if kind not in EVENT_TYPES:
        raise ShapeError(f"no TypedDict for the event type {kind!r}")
    check(event, EVENT_TYPES[kind], kind)


def check_state(state: Any) -> None:
    check(state, State, "state")
