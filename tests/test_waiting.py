"""The test helper that waits on conditions: it returns the value, or fails saying why."""

from __future__ import annotations

import pytest

from .waiting import eventually


async def test_returns_the_first_true_value_of_a_sync_or_async_check() -> None:
    calls = iter([0, 0, 3])
    assert await eventually(lambda: next(calls), message="a count", interval=0) == 3

    async def ready() -> str:
        return "yes"

    assert await eventually(ready, message="an answer") == "yes"


async def test_fails_with_what_was_awaited_and_the_last_value() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"for the moon; last value: \{'up': 0\}"):
        await eventually(
            lambda: {"up": 0}, until=lambda v: v["up"] > 0, timeout=0.05, message="the moon"
        )


async def test_an_error_in_the_check_is_not_retried() -> None:
    def broken() -> bool:
        raise KeyError("gone")

    with pytest.raises(KeyError):
        await eventually(broken, message="anything")
