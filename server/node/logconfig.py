"""Logging that never writes an invite token: a redacting filter and uvicorn's log config.

Invite tokens travel in the WebSocket URL (``/ws?token=…``, the page's scheme), so every
upgrade that uvicorn logs would carry one, the chair's included. :class:`RedactTokens`
rewrites a record before any handler formats it: the value after ``token=``, ``#t=``,
``&t=`` or ``Bearer``, and anything shaped like a signed token (two long URL-safe base64
runs joined by a dot, as itsdangerous writes them), become ``[redacted]`` — in the
message, in its arguments (uvicorn's access formatter reads those one by one), and in a
traceback's text.

:func:`log_config` is uvicorn's own configuration with that filter on both handlers, and
(``own=True``, what ``hemicycle serve`` uses) the root and ``server`` loggers sent through
the same filtered handler; tests pass ``own=False`` so that pytest keeps capturing the
``server`` loggers itself.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

REDACTED = "[redacted]"
_AFTER_KEY = re.compile(r"(?i)(\btoken=|[#?&]t=|\bbearer\s+)[^\s&#\"'<>]+")
_TOKEN_SHAPE = re.compile(r"\.?[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}")


def redact(text: str) -> str:
    """``text`` with every token value replaced by ``[redacted]``."""
    text = _AFTER_KEY.sub(lambda m: m.group(1) + REDACTED, text)
    return _TOKEN_SHAPE.sub(REDACTED, text)


def _clean(value: object) -> object:
    return redact(value) if isinstance(value, str) else value


class RedactTokens(logging.Filter):
    """A handler filter that removes invite tokens from a record (it never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _clean(v) for k, v in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def log_config(level: str = "info", *, own: bool = True) -> dict[str, Any]:
    """uvicorn's ``LOGGING_CONFIG`` with :class:`RedactTokens` on every handler.

    ``own`` also routes the root logger (libraries: asyncio, websockets, aiortc) and the
    ``server`` loggers through the filtered stderr handler, at ``level``.
    """
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact_tokens": {"()": RedactTokens}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact_tokens"]
    if own:
        config["root"] = {"handlers": ["default"], "level": "WARNING"}
        config["loggers"]["server"] = {
            "handlers": ["default"],
            "level": level.upper(),
            "propagate": False,
        }
    return config
