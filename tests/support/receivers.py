"""Webhook receivers on 127.0.0.1 that misbehave on purpose, each in its own threads.

Raw sockets rather than an HTTP server library: the point is to control
exactly what goes on the wire and when (an endless body, one byte a second,
an answer held back), and to record what the caller did (connected or not,
how many at once, when it hung up).
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["ok", "endless", "drip", "slow"]
CHUNK = b"x" * 65536
# Every loop below is bounded by these, whatever the caller does.
MAX_ENDLESS_BYTES = 128 * 1024 * 1024
MAX_DRIP_S = 30.0
MAX_SLOW_S = 30.0


@dataclass
class Seen:
    """One request as the receiver read it, and how its connection ended."""

    request_line: str
    headers: dict[str, str]
    body: bytes
    accepted_at: float
    bytes_sent: int = 0
    peer_closed_at: float | None = None
    sni: str | None = None


@dataclass
class Concurrency:
    """Connections open at once, across every receiver that shares this object."""

    now: int = 0
    peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


class Receiver:
    """Accepts connections on 127.0.0.1 and answers each the way `mode` says.

    ok: `answer` (by default a 200) at once. endless: 200, then body bytes until the caller hangs up
    (at most MAX_ENDLESS_BYTES). drip: 200 with a long content-length, then
    one byte a second until the caller hangs up (at most MAX_DRIP_S). slow:
    the 200 comes after `hold_s`.
    """

    def __init__(
        self,
        mode: Mode,
        *,
        hold_s: float = 3.0,
        shared: Concurrency | None = None,
        tls: ssl.SSLContext | None = None,
        answer: bytes = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
    ) -> None:
        self.mode, self.hold_s, self.tls = mode, min(hold_s, MAX_SLOW_S), tls
        self.answer = answer
        self.seen: list[Seen] = []
        self.connections = 0
        self.mine = Concurrency()
        self.shared = shared
        self.last_sni: str | None = None
        if tls is not None:
            tls.sni_callback = self._on_sni
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def _on_sni(self, _sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        self.last_sni = name

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        counters = [self.mine] + ([self.shared] if self.shared else [])
        for counter in counters:
            counter.enter()
        try:
            conn.settimeout(10)
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            seen = self._read_request(conn)
            if seen is None:
                return
            seen.sni = self.last_sni
            self.seen.append(seen)
            getattr(self, f"_answer_{self.mode}")(conn, seen)
        except (OSError, ssl.SSLError):
            pass
        finally:
            for counter in counters:
                counter.leave()
            conn.close()

    @staticmethod
    def _read_request(conn: socket.socket) -> Seen | None:
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        length = min(int(headers.get("content-length", "0")), 1 << 20)
        while len(body) < length:
            chunk = conn.recv(4096)
            if not chunk:
                break
            body += chunk
        return Seen(lines[0], headers, body, time.monotonic())

    def _answer_ok(self, conn: socket.socket, seen: Seen) -> None:
        conn.sendall(self.answer)

    def _answer_slow(self, conn: socket.socket, seen: Seen) -> None:
        self._stop.wait(self.hold_s)
        self._answer_ok(conn, seen)

    def _answer_endless(self, conn: socket.socket, seen: Seen) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n")  # body until close
        try:
            while seen.bytes_sent < MAX_ENDLESS_BYTES and not self._stop.is_set():
                conn.sendall(CHUNK)
                seen.bytes_sent += len(CHUNK)
        except OSError:
            seen.peer_closed_at = time.monotonic()

    def _answer_drip(self, conn: socket.socket, seen: Seen) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n")
        deadline = time.monotonic() + MAX_DRIP_S
        while time.monotonic() < deadline and not self._stop.is_set():
            # A second between bytes, unless the caller hangs up meanwhile.
            readable, _, _ = select.select([conn], [], [], 1.0)
            if readable:
                try:
                    if conn.recv(1) == b"":
                        break
                except OSError:
                    break
                continue
            try:
                conn.sendall(b"x")
                seen.bytes_sent += 1
            except OSError:
                break
        seen.peer_closed_at = time.monotonic()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._accepter.join(5)
        for thread in self._threads:
            thread.join(5)
