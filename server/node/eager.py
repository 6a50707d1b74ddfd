"""Run an ASGI send at once, from the caller, and finish it in a task only if it must wait.

Why by hand: the hub hands one frame to hundreds of connections in one loop. Waking each
connection's writer task per frame costs a task switch per delivery — measured at a third
of a bare ASGI send (docs/benchmarks.md, "Fan-out"). An ASGI send to a writable socket
completes without suspending, so :func:`start` steps the coroutine once, synchronously
(what Python 3.12's eager tasks do; this project runs on 3.11, which has none). Only when
the coroutine suspends (the socket's buffer is full) does a task take over and drive it to
its end, resuming it exactly as a task would.

Everything that steps a coroutine by hand is here, and :func:`self_check` (awaited when a
node starts) proves on this interpreter that both paths behave: a send that completes at
once is done, a send that suspends on a future is resumed by the task with the future's
result, and an exception before the first suspension reaches the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

Send = Coroutine[Any, Any, None]


def start(coro: Send) -> asyncio.Task[None] | None:
    """Step ``coro`` now. ``None``: it finished. A task: it waits, and the task finishes it.

    An exception the coroutine raises before its first suspension is raised here.
    """
    try:
        waiting_on = coro.send(None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(_finish(coro, waiting_on))


async def _finish(coro: Send, waiting_on: Any) -> None:
    """Drive ``coro`` to its end: it was stepped outside a task and suspended on
    ``waiting_on``, the future it yielded (``None``: a bare yield).

    What a task does with a yielded future, done here: wait until it is done (without
    awaiting it a second time, which asyncio refuses), then resume ``coro``, which reads
    the future's outcome itself.
    """
    try:
        while True:
            if waiting_on is None:
                await asyncio.sleep(0)
            else:
                await asyncio.wait({waiting_on})
            try:
                waiting_on = coro.send(None)
            except StopIteration:
                return
    except asyncio.CancelledError:
        coro.close()
        raise


async def self_check() -> None:
    """Raise ``RuntimeError`` unless eager sends behave on this interpreter (see above)."""

    async def immediate(out: list[str]) -> None:
        out.append("sent")

    async def waits(fut: asyncio.Future[str], out: list[str]) -> None:
        out.append(await fut)

    async def fails() -> None:
        raise OSError("socket gone")

    out: list[str] = []
    if start(immediate(out)) is not None or out != ["sent"]:
        raise RuntimeError("an immediate send did not finish at once")
    fut = asyncio.get_running_loop().create_future()
    task = start(waits(fut, out))
    if task is None:
        raise RuntimeError("a waiting send finished before its future")
    fut.set_result("resumed")
    await task
    if out != ["sent", "resumed"]:
        raise RuntimeError(f"a waiting send was not resumed with its result: {out}")
    try:
        start(fails())
    except OSError:
        return
    raise RuntimeError("a failing send did not raise to its caller")
