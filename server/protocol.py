"""Wire codecs and frame checks: the one place that calls ``json`` and ``msgpack``.

Two codecs, chosen by WebSocket subprotocol: ``hemicycle.json`` (browsers, text frames)
and ``hemicycle.msgpack`` (native clients and benchmarks, binary frames). Messages are
maps with a ``type`` key; docs/protocol.md lists them all.
"""

from __future__ import annotations

import json
from typing import Any, Literal, cast

import msgpack

from .errors import BadFrame, FrameTooLarge

MAX_FRAME = 64 * 1024
"""Largest client frame the server reads; larger ones get ``frame_too_large``."""
MAX_DEPTH = 32
"""Deepest nesting of maps and lists a client frame may have (the deepest real one, a
poll definition's option texts, has 5): deeper frames get ``bad_frame``, so nothing
downstream (checks, the log's encoder, the fold) ever recurses through a hostile one."""

JSON = "hemicycle.json"
MSGPACK = "hemicycle.msgpack"
SUBPROTOCOLS = (MSGPACK, JSON)

Codec = Literal["json", "msgpack"]

Message = dict[str, Any]


def codec_for(subprotocol: str | None) -> Codec:
    return "msgpack" if subprotocol == MSGPACK else "json"


def encode(message: Any, codec: Codec) -> bytes | str:
    """Encode ``message`` for ``codec``: ``str`` for JSON text frames, ``bytes`` for msgpack."""
    if codec == "msgpack":
        return pack(message)
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


class Encoded:
    """A value already encoded for one codec, spliced as is by :func:`encode_map`: a large
    part that many messages share (a welcome's roster) is encoded once, not per message."""

    __slots__ = ("codec", "data")

    def __init__(self, data: bytes | str, codec: Codec) -> None:
        self.data = data
        self.codec = codec


def encode_map(items: list[tuple[str, Any]], codec: Codec) -> bytes | str:
    """Encode the map of ``items`` (in order) like :func:`encode`, taking each
    :class:`Encoded` value's bytes as they are; it decodes as ``encode(dict(items))`` would."""
    for _, value in items:
        if isinstance(value, Encoded) and value.codec != codec:
            raise ValueError(f"an {value.codec} part spliced into a {codec} message")
    if codec == "msgpack":
        n = len(items)
        if n >= 1 << 16:
            raise ValueError("encode_map: too many keys")
        parts = [bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")]
        for key, value in items:
            parts.append(pack(key))
            parts.append(cast(bytes, value.data) if isinstance(value, Encoded) else pack(value))
        return b"".join(parts)
    fields = []
    for key, value in items:
        data = value.data if isinstance(value, Encoded) else encode(value, codec)
        fields.append(cast(str, encode(key, codec)) + ":" + cast(str, data))
    return "{" + ",".join(fields) + "}"


def decode(frame: bytes | str, codec: Codec, *, limit: int | None = MAX_FRAME) -> Message:
    """Decode one frame; raise :class:`BadFrame` unless it is a map with a ``type``.

    ``limit`` bounds client frames; a client reading the server passes ``None`` (a welcome
    snapshot of a large assembly is bigger than any client frame may be).
    """
    if limit is not None and len(frame) > limit:
        raise FrameTooLarge(f"frame of {len(frame)} bytes exceeds the {MAX_FRAME} byte limit")
    try:
        if codec == "msgpack":
            if isinstance(frame, str):
                raise BadFrame("msgpack subprotocol expects binary frames")
            value = msgpack.unpackb(frame, raw=False, strict_map_key=True)
        else:
            value = json.loads(frame)
    except BadFrame:
        raise
    except (RecursionError, msgpack.StackError):
        # The JSON parser recurses per level (30,000 '[' reach Python's limit); msgpack's
        # unpacker stops at its own stack of 1,024 levels.
        raise BadFrame(f"a frame may nest at most {MAX_DEPTH} levels") from None
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError) as exc:
        raise BadFrame(f"cannot decode {codec} frame: {exc}") from None
    if limit is not None and not shallow(value, MAX_DEPTH):
        raise BadFrame(f"a frame may nest at most {MAX_DEPTH} levels")
    if not isinstance(value, dict):
        raise BadFrame("a message must be a map")
    if not isinstance(value.get("type"), str):
        raise BadFrame("a message needs a string 'type'")
    return value


def shallow(value: Any, depth: int) -> bool:
    """True if ``value`` nests maps and lists at most ``depth`` levels (no recursion)."""
    level: list[Any] = [value]
    for _ in range(depth + 1):
        below: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                below.extend(item.values())
            elif isinstance(item, list):
                below.extend(item)
        if not below:
            return True
        level = below
    return False


def pack(value: Any) -> bytes:
    """msgpack for storage and the bus (snapshots, log entries, audio frames)."""
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def canonical(value: Any) -> bytes:
    """Deterministic bytes of a JSON-able value (sorted keys), for state digests."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def pretty(value: Any) -> str:
    """Indented JSON with a final newline, for files people read (docs/events.schema.json)."""
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"
