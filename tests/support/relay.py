"""A TCP relay on 127.0.0.1 that can lose the server's answers.

Put between an agent and its hub (TLS passes through it untouched), it makes
the fault that at-least-once delivery exists for: the request got through and
the hub did the work, but the answer never came back. While `losing` is set,
an established connection on which the server sends anything is closed
instead, the bytes dropped, as by a network that fails after the request went
out. Connections younger than ESTABLISHED_S pass: their first bytes are the
TLS handshake, and losing it would only refuse the connection, never an answer.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

CHUNK = 65536
ESTABLISHED_S = 0.3  # a TLS handshake (and its session tickets) on 127.0.0.1 is done by then


class _Pair:
    """A client connection and its upstream one, closed together, once."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self.opened = time.monotonic()
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for sock in (self.client, self.upstream):
            # shutdown wakes the other pump thread out of recv(); close alone does not
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class LossyRelay:
    """Relays 127.0.0.1:`port` to 127.0.0.1:`target_port`, one thread per direction."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.losing = threading.Event()
        self.answers_lost = 0  # connections closed instead of answered
        self._lock = threading.Lock()
        self._pairs: set[_Pair] = set()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:  # ends when close() closes the listening socket
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:  # the server is down: so is the relay, for this client
                client.close()
                continue
            upstream.settimeout(None)
            pair = _Pair(client, upstream)
            with self._lock:
                self._pairs.add(pair)
            for source, answers in ((client, False), (upstream, True)):
                threading.Thread(
                    target=self._pump, args=(pair, source, answers), daemon=True
                ).start()

    def _pump(self, pair: _Pair, source: socket.socket, answers: bool) -> None:
        sink = pair.client if answers else pair.upstream
        try:
            while data := source.recv(CHUNK):  # ends at EOF or when the pair is closed
                established = time.monotonic() - pair.opened > ESTABLISHED_S
                if answers and established and self.losing.is_set():
                    with self._lock:
                        self.answers_lost += 1
                    return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            pair.close()
            with self._lock:
                self._pairs.discard(pair)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self._server.close()
        self._acceptor.join(5)
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            pair.close()
