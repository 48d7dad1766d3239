"""Request deadlines in the hub's HTTP protocol: a request head must arrive
in time, and a body must keep arriving.

uvicorn times a connection out only between a response and the next
request's first byte (its keep-alive timer). A client that sends half a
request line, or a body one byte a minute, holds the connection and its
file descriptor forever: slowloris. Here each connection is in one phase,
driven by the httptools parser's callbacks:

  HEADERS  from accept (the first request: the TLS handshake counts) or from
           a later request's first byte, until the head is complete; one
           deadline, `header_timeout_s`
  BODY     from the complete head until the message is complete; at most
           `body_timeout_s` without a byte
  IDLE     between messages: the app is answering, or uvicorn's keep-alive
           timer runs

At most one timer runs per connection, and a request that arrives whole in
one read (the usual case) sets none. When the stall is ours (uvicorn paused
reading because the app has not taken the body yet, or the client waits for
our `100 Continue`), the timer waits again instead of closing.

The hooks are httptools callbacks uvicorn's protocol implements (uvicorn is
pinned); tests/hub/test_listener_hooks.py fails if an upgrade renames them.
"""

import asyncio
from typing import Final

from ._connections import BODY_TIMEOUT, HEADER_TIMEOUT, ConnectionLimits, Slot
from ._tls import ClientCertHttpToolsProtocol

_IDLE: Final = 0
_HEADERS: Final = 1
_BODY: Final = 2


class GuardedHttpToolsProtocol(ClientCertHttpToolsProtocol):
    """uvicorn's httptools protocol with the client certificate in every
    scope (see _tls.py) and request deadlines (see the module docstring).

    The listener calls `guard` before the connection is made; without it the
    protocol behaves as its parent.
    """

    _slot: Slot | None = None
    _limits: ConnectionLimits = ConnectionLimits()
    _phase: int = _IDLE
    _started: float = 0.0  # when the current request head began
    _last_byte: float = 0.0
    _now: float = 0.0  # the loop's time at the current read
    _timer: asyncio.TimerHandle | None = None

    def guard(self, slot: Slot, limits: ConnectionLimits, accepted_at: float) -> None:
        self._slot = slot
        self._limits = limits
        self._started = accepted_at

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self._slot is None:
            return
        self._slot.set_evict(transport.abort)
        # The first request head is due `header_timeout_s` after accept,
        # whether or not a byte ever comes.
        self._phase = _HEADERS
        self._arm(self._started + self._limits.header_timeout_s)

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
        if self._phase == _IDLE or self.transport.is_closing():
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
