"""Run blocking file work (hashing, unpacking, deleting trees) off the event loop."""

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")


async def in_thread(fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
    """`fn(*args, **kwargs)` in the default executor, so the agent's loop keeps running.

    A thread cannot be stopped: on cancellation wait for it to finish before
    passing the cancellation on, so no unpack keeps writing behind a later
    sweep or a retry of the same install.
    """
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise
