"""Waiting on conditions instead of sleeping: ``await eventually(check, message=...)``."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from .conftest import timeout as scaled

T = TypeVar("T")


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    *,
    message: str,
    until: Callable[[T], object] = bool,
    timeout: float = 5.0,
    interval: float = 0.02,
) -> T:
    """Call ``check`` (sync or async) until its value is true, and return that value.

    ``until`` decides what counts as true (by default the value's truth), so that a failure
    can show a value that says more than ``False``. Fails the test after ``timeout``
    seconds (scaled by HEMICYCLE_TEST_TIMEOUT_SCALE) with ``message`` (what was awaited)
    and the last value seen. An exception raised by ``check`` is not retried: it propagates.
    """
    deadline = time.monotonic() + scaled(timeout)
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if until(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"waited {scaled(timeout):g} s for {message}; last value: {value!r}")
        await asyncio.sleep(interval)


async def same_end(*hubs: Any) -> None:
    """Wait until every hub has folded the same last entry of the room's log."""
    await eventually(
        lambda: [hub.state["meta"]["last"] for hub in hubs],
        until=lambda ends: len(set(ends)) == 1,
        timeout=10,
        message="the nodes to fold up to the same entry",
    )
