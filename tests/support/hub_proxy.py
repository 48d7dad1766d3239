"""A stand-in for a reverse proxy in front of a real hub, on 127.0.0.1.

It terminates TLS with the hub's own certificate (issued for 127.0.0.1, so an
agent given the hub's CA trusts it), answers the next requests to a path with
scripted statuses (408, 429 with Retry-After, 503, ...), as a proxy or load
balancer does when the hub behind it is slow or restarting, and forwards
everything else to the hub. Enough for enrollment, which needs no client
certificate; mTLS calls forwarded through it reach the hub without one.
"""

from __future__ import annotations

import collections
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

import httpx

from tests.support.processes import HubProcess, tls

_HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}
)
_MAX_BODY: Final = 1024 * 1024


@dataclass(frozen=True)
class Answered:
    """One request the proxy saw: what it asked for and what it got, and when."""

    method: str
    path: str
    status: int
    at: float  # time.monotonic() when the request arrived


@dataclass(frozen=True)
class _Scripted:
    status: int
    headers: dict[str, str]
    body: bytes


class HubProxy:
    """See the module docstring. Use as a context manager, or call close()."""

    def __init__(self, hub: HubProcess) -> None:
        self.hub = hub
        self.seen: list[Answered] = []
        self._script: dict[str, collections.deque[_Scripted]] = collections.defaultdict(
            collections.deque
        )
        self._lock = threading.Lock()
        self._upstream = httpx.Client(base_url=hub.url, verify=tls(hub.ca), timeout=30)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                proxy._handle(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(
            hub.data_dir / "tls" / "hub.pem", hub.data_dir / "tls" / "hub-key.pem"
        )
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        self.url = f"https://127.0.0.1:{self._httpd.server_address[1]}"

    def answer_next(
        self, path: str, status: int, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> None:
        """Answer the next request to `path` (after those already scripted) with `status`."""
        with self._lock:
            self._script[path].append(_Scripted(status, dict(headers or {}), body))

    def statuses(self, path: str) -> list[int]:
        with self._lock:
            return [a.status for a in self.seen if a.path == path]

    def arrivals(self, path: str) -> list[float]:
        with self._lock:
            return [a.at for a in self.seen if a.path == path]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        arrived = time.monotonic()
        path = handler.path.split("?", 1)[0]
        length = min(int(handler.headers.get("Content-Length") or 0), _MAX_BODY)
        body = handler.rfile.read(length) if length else b""
        with self._lock:
            queue = self._script.get(path)
            scripted = queue.popleft() if queue else None
        if scripted is not None:
            status, headers, content = scripted.status, scripted.headers, scripted.body
        else:
            forwarded = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
            try:
                response = self._upstream.request(
                    handler.command, handler.path, headers=forwarded, content=body
                )
                status, content = response.status_code, response.content
                headers = {
                    k: v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP
                }
            except httpx.HTTPError:
                status, headers, content = 502, {}, b"bad gateway"
        with self._lock:
            self.seen.append(Answered(handler.command, path, status, arrived))
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        handler.wfile.write(content)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        self._upstream.close()

    def __enter__(self) -> HubProxy:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
