"""A response's head and body leave in one send (hub/_write_coalescing.py).

The served hub's behaviour over real connections is covered by every test
that talks to it (tests/hub/test_device_api.py, tests/hostile/test_slowloris.py
and the rest); these pin what the wrapper hands its transport."""

import asyncio
from typing import Any

from fogline.hub._write_coalescing import HOLD_MAX_BYTES, CoalescingTransport


class RecordingTransport:
    """The calls a transport received, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def writelines(self, list_of_data: Any) -> None:
        self.calls.append(("writelines", [bytes(d) for d in list_of_data]))

    def close(self) -> None:
        self.closing = True
        self.calls.append(("close", None))

    def abort(self) -> None:
        self.closing = True
        self.calls.append(("abort", None))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def _wrap() -> tuple[RecordingTransport, CoalescingTransport]:
    inner = RecordingTransport()
    return inner, CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]


async def _next_turn() -> None:
    await asyncio.sleep(0)


def test_head_and_body_written_in_one_turn_leave_in_one_call() -> None:
    async def scenario() -> None:
        inner, transport = _wrap()
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b'{"ok":true}')
        assert inner.calls == [("writelines", [b"HTTP/1.1 200 OK\r\n\r\n", b'{"ok":true}'])]
        await _next_turn()
        assert len(inner.calls) == 1  # nothing left behind

    asyncio.run(scenario())


def test_a_lone_write_leaves_at_the_end_of_the_turn() -> None:
    async def scenario() -> None:
        inner, transport = _wrap()
        transport.write(b"HTTP/1.1 304 Not Modified\r\n\r\n")
        assert inner.calls == []
        assert transport.get_write_buffer_size() == len(b"HTTP/1.1 304 Not Modified\r\n\r\n")
        await _next_turn()
        assert inner.calls == [("write", b"HTTP/1.1 304 Not Modified\r\n\r\n")]

    asyncio.run(scenario())


def test_large_writes_are_not_held() -> None:
    async def scenario() -> None:
        inner, transport = _wrap()
        chunk = b"x" * (HOLD_MAX_BYTES + 1)
        transport.write(chunk)
        transport.write(chunk)
        assert inner.calls == [("write", chunk), ("write", chunk)]

    asyncio.run(scenario())


def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    async def scenario() -> None:
        inner, transport = _wrap()
        transport.write(b"bye")
        transport.close()
        assert inner.calls == [("write", b"bye"), ("close", None)]

        inner, transport = _wrap()
        transport.write(b"never sent")
        transport.abort()
        await _next_turn()
        assert inner.calls == [("abort", None)]

    asyncio.run(scenario())


def test_other_calls_reach_the_wrapped_transport() -> None:
    async def scenario() -> None:
        _inner, transport = _wrap()
        assert transport.get_extra_info("peername") == "info:peername"
        assert not transport.is_closing()

    asyncio.run(scenario())
