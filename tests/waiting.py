"""Waiting on conditions instead of sleeping: ``await eventually(check, message=...)``."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from .conftest import timeout as scaled

T = TypeVar("T")


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    *,
    message: str,
    timeout: float = 5.0,
    interval: float = 0.02,
) -> T:
    """Call ``check`` (sync or async) until it returns something true, and return that.

    Fails the test after ``timeout`` seconds (scaled by HEMICYCLE_TEST_TIMEOUT_SCALE) with
    ``message`` (what was awaited) and the last value ``check`` returned. An exception
    raised by ``check`` is not retried: it propagates.
    """
    deadline = time.monotonic() + scaled(timeout)
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            pytest.fail(f"waited {scaled(timeout):g} s for {message}; last value: {value!r}")
        await asyncio.sleep(interval)
