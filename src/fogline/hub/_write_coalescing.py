"""Writes made in one turn of the loop leave the hub together.

uvicorn writes a response's head and its body with two `transport.write`
calls. Over TLS each became its own record and its own send on the socket
(uvloop sends at once when nothing is queued), and on loopback a send also
runs the receiver's half of TCP: for a report's ack, sending it in one
cut the hub's CPU per report by 10-18 % (bench_hub_scale, BENCHMARKS.md).
`CoalescingTransport` holds a small write until the next write, then hands
both to the transport in one `writelines` (one send), or until the end of
this turn of the loop, whichever comes first. Large writes (artifact
chunks) are never held, and closing sends what is held first.
"""

import asyncio
from typing import Any, Final

# A response head or a small answer: worth holding for the write after it.
HOLD_MAX_BYTES: Final = 4096


class CoalescingTransport:
    """Wraps a protocol's transport; everything but writing and closing is
    the wrapped transport's own (`__getattr__`)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.writelines((held, data))
        elif len(data) <= HOLD_MAX_BYTES:
            self._held = bytes(data)
            self._loop.call_soon(self._flush)
        else:
            self._transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held and not self._transport.is_closing():
            self._transport.write(held)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
