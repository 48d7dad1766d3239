"""Guards what the hub's gate and request deadlines rely on in uvicorn (pinned).

_listener.py starts uvicorn with no sockets and adds its acceptors to the
server list; _http_guard.py hooks httptools callbacks of uvicorn's protocol.
If an upgrade changes either, these tests fail instead of the hub silently
losing its slowloris defences.
"""

from __future__ import annotations

import inspect
import threading
from typing import Any

import uvicorn
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from fogline.hub._http_guard import GuardedHttpToolsProtocol
from tests.support.processes import wait_until


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    return None


class _FakeServer:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def close(self) -> None:
        self.calls.append("close")

    async def wait_closed(self) -> None:
        self.calls.append("wait_closed")


class _Server(uvicorn.Server):
    fake = _FakeServer()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=[])
        self.servers.append(self.fake)  # type: ignore[arg-type]


def test_uvicorn_started_without_sockets_closes_the_servers_we_add() -> None:
    server = _Server(uvicorn.Config(_app, lifespan="off", log_config=None, loop="asyncio"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 10, "uvicorn to start")
        assert server.servers == [server.fake]  # uvicorn bound nothing of its own
    finally:
        server.should_exit = True
        thread.join(10)
    assert server.fake.calls == ["close", "wait_closed"]


def test_the_httptools_callbacks_and_state_we_hook_exist() -> None:
    for name in (
        "connection_made",
        "connection_lost",
        "data_received",
        "on_message_begin",
        "on_headers_complete",
        "on_message_complete",
        "on_response_complete",
    ):
        assert callable(getattr(HttpToolsProtocol, name)), name
        assert name in GuardedHttpToolsProtocol.__dict__, name  # ours extends each
    init = inspect.getsource(HttpToolsProtocol.__init__)
    assert "self.cycle" in init and "self.flow" in init and "self.loop" in init
    assert "read_paused" in inspect.getsource(FlowControl.__init__)
    cycle = inspect.getsource(RequestResponseCycle.__init__)
    assert "self.waiting_for_100_continue" in cycle and "self.response_complete" in cycle
    # An idle connection's cycle is None (_forget_request); LeanFlowControl
    # replaces FlowControl's Event with its own, made on the first pause.
    assert "self.cycle is None" in inspect.getsource(HttpToolsProtocol.shutdown)
    assert "if self.cycle" in inspect.getsource(HttpToolsProtocol.connection_lost)
    assert "existing_cycle is None" in inspect.getsource(HttpToolsProtocol.on_headers_complete)
    flow_methods = {"drain", "pause_writing", "resume_writing", "pause_reading", "resume_reading"}
    assert {n for n in vars(FlowControl) if not n.startswith("_")} == flow_methods
    assert "self.flow.write_paused" in inspect.getsource(RequestResponseCycle.send)
