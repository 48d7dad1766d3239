"""Request deadlines in the hub's HTTP protocol: a connection must start a
request in time, finish its head in time, and keep a body arriving.

uvicorn times a connection out only between a response and the next
request's first byte (its keep-alive timer). A client that connects and
sends nothing, sends half a request line, or a body one byte a minute, holds
the connection and its file descriptor forever: slowloris. Here each
connection is in one phase, driven by the httptools parser's callbacks:

  IDLE     no request in progress. Before the first request: at most
           `idle_timeout_s` from accept (ours). Between requests: uvicorn's
           keep-alive timer, set to the same value. While the app answers:
           no limit here (long-polls wait on purpose).
  HEADERS  from a request's first byte until its head is complete: one
           deadline, `header_timeout_s`; bytes arriving do not extend it.
  BODY     from the complete head until the message is complete: at most
           `body_timeout_s` without a byte.

At most one timer runs per connection, and a request that arrives whole in
one read (the usual case) sets none. When the stall is ours (uvicorn paused
reading because the app has not taken the body yet, or the client waits for
our `100 Continue`), the timer waits again instead of closing.

Idle connections are most of what a hub holds (a fleet keeps one open per
device): between requests the protocol lets go of the last request's state
(uvicorn keeps its cycle, scope and headers until the next request replaces
them, about 6 KB after a FastAPI route), and the flow control's asyncio.Event
is made only when writing pauses (see `LeanFlowControl`).

The hooks are httptools callbacks uvicorn's protocol implements (uvicorn is
pinned); tests/hub/test_listener_hooks.py fails if an upgrade renames them.
"""

import asyncio
from typing import Final

from uvicorn.protocols.http.flow_control import FlowControl

from ._artifact_response import WRITE_HIGH_WATER_BYTES
from ._connections import BODY_TIMEOUT, HEADER_TIMEOUT, IDLE_TIMEOUT, ConnectionLimits, Slot
from ._tls import ClientCertHttpToolsProtocol
from ._write_coalescing import CoalescingTransport

_IDLE: Final = 0
_HEADERS: Final = 1
_BODY: Final = 2


class LeanFlowControl(FlowControl):
    """uvicorn's flow control with its "writable" event made on the first
    pause (a slow download), not for every connection: an asyncio.Event is
    about 0.9 KB, and a paused writer is rare. Same behaviour: `drain`
    returns at once unless writing is paused."""

    def __init__(self, transport: asyncio.Transport) -> None:  # not the parent's: no Event
        self._transport = transport
        self.read_paused = False
        self.write_paused = False
        self._writable: asyncio.Event | None = None

    async def drain(self) -> None:
        if self.write_paused:
            if self._writable is None:
                self._writable = asyncio.Event()
            await self._writable.wait()

    def pause_writing(self) -> None:
        if not self.write_paused:
            self.write_paused = True
            if self._writable is not None:
                self._writable.clear()

    def resume_writing(self) -> None:
        if self.write_paused:
            self.write_paused = False
            if self._writable is not None:
                self._writable.set()


class GuardedHttpToolsProtocol(ClientCertHttpToolsProtocol):
    """uvicorn's httptools protocol with the client certificate in every
    scope (see _tls.py), request deadlines (see the module docstring), and
    writes coalesced (see _write_coalescing.py).

    The listener calls `guard` before the connection is made; without it the
    protocol behaves as its parent.
    """

    _slot: Slot | None = None
    _limits: ConnectionLimits = ConnectionLimits()
    _phase: int = _IDLE
    _fresh: bool = True  # no byte of a request yet
    _accepted_at: float = 0.0
    _started: float = 0.0  # when the current request head began
    _last_byte: float = 0.0
    _now: float = 0.0  # the loop's time at the current read
    _timer: asyncio.TimerHandle | None = None

    def guard(self, slot: Slot, limits: ConnectionLimits, accepted_at: float) -> None:
        self._slot = slot
        self._limits = limits
        self._accepted_at = accepted_at

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = LeanFlowControl(transport)
        # uvicorn waits for the peer only above the transport's high-water
        # mark, 512 KiB with uvloop's TLS: a slow download held that much
        # (see _artifact_response.py).
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER_BYTES)
        # A response's head and body leave in one send (see _write_coalescing.py).
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]
        if self._slot is None:
            return
        self._slot.set_evict(transport.abort)
        # uvicorn's keep-alive timer starts after a first response only: a
        # connection that never sends a byte is ours to close.
        self._arm(self._accepted_at + self._limits.idle_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._disarm()
        if self._slot is not None:
            self._slot.release()

    def data_received(self, data: bytes) -> None:
        if self._slot is None:
            super().data_received(data)
            return
        self._now = self._last_byte = now = self.loop.time()
        if self._phase == _IDLE:
            # Any byte starts the next request's clock, even bytes the parser
            # skips without beginning a message (CRLFs between requests).
            self._phase, self._started = _HEADERS, now
            if self._fresh:
                self._fresh = False
                self._disarm()  # the idle timer of a new connection
        super().data_received(data)
        if self._phase != _IDLE and self._timer is None and not self.transport.is_closing():
            self._arm(self._deadline())

    # -- httptools callbacks ----------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._phase == _IDLE:  # a pipelined request in the same read
            self._phase, self._started = _HEADERS, self._now

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self._phase == _HEADERS:
            self._phase = _BODY
            if self._slot is not None:
                self._slot.proven()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._phase = _IDLE
        self._disarm()
        self._forget_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._forget_request()

    def _forget_request(self) -> None:
        """Drop the last request's cycle, scope and headers once both its
        message and its response are complete and nothing is pipelined
        behind it: the connection waits for its next request holding none
        of them. uvicorn's code reads `self.cycle` as None-able (it starts
        as None) wherever an idle connection can reach it."""
        cycle = self.cycle
        if (
            cycle is not None
            and cycle.response_complete
            and self._phase == _IDLE
            and not self.pipeline
        ):
            self.cycle = None  # type: ignore[assignment]
            self.scope = None
            self.headers = None  # type: ignore[assignment]
            self.url = b""

    # -- the timer --------------------------------------------------------------

    def _deadline(self) -> float:
        if self._phase == _HEADERS:
            return self._started + self._limits.header_timeout_s
        return self._last_byte + self._limits.body_timeout_s

    def _arm(self, when: float) -> None:
        self._timer = self.loop.call_at(when, self._on_timer)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._phase == _IDLE:
            if self._fresh and self._slot is not None:  # never sent a byte
                self._slot.shed(IDLE_TIMEOUT)
                self.transport.abort()
            return
        now = self.loop.time()
        if self._stalled_by_us():
            self._last_byte = self._started = now  # the client's clock restarts
            self._arm(self._deadline())
            return
        deadline = self._deadline()
        if now < deadline:
            self._arm(deadline)
            return
        if self._slot is not None:
            self._slot.shed(HEADER_TIMEOUT if self._phase == _HEADERS else BODY_TIMEOUT)
        # abort, not close: a stalled peer need not be sent a TLS close_notify,
        # and its file descriptor is freed now.
        self.transport.abort()

    def _stalled_by_us(self) -> bool:
        if self.flow is not None and self.flow.read_paused:
            return True
        cycle = self.cycle
        return (
            self._phase == _BODY
            and cycle is not None
            and not cycle.response_complete
            and cycle.waiting_for_100_continue
        )
