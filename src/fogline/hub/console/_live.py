"""Live sections of console pages: server-sent events carrying HTML.

One event a second, a stream at most SSE_MAX_S long (the browser reconnects
by itself), at most MAX_STREAMS streams at once per hub process.
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Final

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from .._clock import utcnow
from .._errors import UnauthorizedError
from .._people import authenticate
from ._session import ConsoleRefusal

SSE_INTERVAL_S: Final = 1.0
SSE_MAX_S: Final = 300.0
MAX_STREAMS: Final = 64
_STREAMS: Final = asyncio.Semaphore(MAX_STREAMS)


async def live_section(request: Request, tick: Callable[[], tuple[str, bool] | None]) -> Response:
    """A live section for console.js: `progress` events carrying the HTML
    `tick` renders (in a worker thread), sent when it changed, once per
    SSE_INTERVAL_S for at most SSE_MAX_S or until `tick` says it ended;
    `tick` answers None when the session no longer authenticates, which
    ends the stream. The first tick
    runs before the response starts, so an unknown thing is a 404 page."""
    if _STREAMS.locked():
        raise ConsoleRefusal(503, "too many live views open; reload in a moment")
    first = await run_in_threadpool(tick)
    if first is None:
        raise ConsoleRefusal(401, "sign in again", sign_in=True)

    async def stream() -> AsyncIterator[bytes]:
        async with _STREAMS:
            yield b"retry: 2000\n\n"
            last = ""
            deadline = asyncio.get_running_loop().time() + SSE_MAX_S
            while asyncio.get_running_loop().time() < deadline:
                if await request.is_disconnected():
                    return
                ticked = await run_in_threadpool(tick)
                if ticked is None:
                    yield b"event: end\ndata: signed out\n\n"
                    return
                html, ended = ticked
                if html != last:
                    last = html
                    data = "".join(f"data: {line}\n" for line in html.splitlines())
                    yield f"event: progress\n{data}\n".encode()
                if ended:
                    yield b"event: end\ndata: ended\n\n"
                    return
                await asyncio.sleep(SSE_INTERVAL_S)

    headers = {"cache-control": "no-store", "x-accel-buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


def still_signed_in(session: Session, token: str) -> bool:
    """Whether the viewer's session token still authenticates: each tick of
    a live section asks, so a revoked session ends its streams."""
    try:
        authenticate(session, token, utcnow())
    except UnauthorizedError:
        return False
    return True
