"""The hub's gate: it accepts connections itself, so that it sees each
client's address before any TLS work, caps connections per address and in
all (see _connections.py), bounds the TLS handshake, and only then hands the
connection to uvicorn's HTTP protocol (ours, with request deadlines: see
_http_guard.py).

uvicorn accepts through `loop.create_server(ssl=...)`: the protocol learns
the peer only after the handshake, which has the loop's default 60 s
timeout, and nothing caps connections. An `Acceptor` instead runs
`loop.sock_accept` on the listening socket, takes a slot for the peer's
address (or refuses it, before reading a byte), and runs
`loop.connect_accepted_socket(ssl=..., ssl_handshake_timeout=...)`; the
HTTP protocol's `connection_made` comes from the TLS layer once the
handshake is done, exactly as with uvicorn's own server.

`HubServer` (see _serve.py) starts uvicorn with no sockets of its own and
adds the acceptors to its server list, so uvicorn's shutdown closes them
like its own servers. Workers (`--workers N`) each run acceptors on the one
listening socket they inherit; the kernel hands each connection to one of
them.
"""

import asyncio
import contextlib
import errno
import ipaddress
import logging
import resource
import socket
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

from fogline._log import event

from ._connections import (
    HANDSHAKE_FAILED,
    HANDSHAKE_TIMEOUT,
    SHED_REASONS,
    ConnectionLimits,
    ConnectionTable,
    Slot,
    address_key,
)
from ._http_guard import GuardedHttpToolsProtocol
from ._metrics import HubMetrics
from ._tls import ReloadingServerTls

log = logging.getLogger("fogline.hub")

# Connections taken from the backlog per wake-up: a reconnect storm (a whole
# fleet after a hub restart) drains quickly, and one turn of the loop stays short.
_ACCEPT_BATCH: Final = 64
# The client went away, or a firewall refused it, between SYN and accept:
# that connection is gone, the next one is fine.
_ACCEPT_PEER_ERRORS: Final = frozenset(
    {errno.ECONNABORTED, errno.ECONNRESET, errno.EPROTO, errno.EPERM, errno.ETIMEDOUT}
)
_ACCEPT_PAUSE_S: Final = 0.1
_LOG_EVERY_S: Final = 10.0
# File descriptors kept back from the connection budget: database
# connections (SQLite: up to three files each), artifact files being
# streamed, listening sockets, logs, the loop's own.
_RESERVED_FDS: Final = 256
_NOFILE_CEILING: Final = 1 << 20  # what Linux allows by default (fs.nr_open)


@dataclass(frozen=True, slots=True)
class OpenFileLimit:
    soft: int
    hard: int
    was: int  # the soft limit before the hub raised it


def raise_open_file_limit() -> OpenFileLimit:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (workers
    inherit it): every connection is a file descriptor, and the usual soft
    limit of 1024 is what the slowloris in issue #12 exhausted."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _NOFILE_CEILING if hard == resource.RLIM_INFINITY else hard
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            target = soft
    return OpenFileLimit(max(soft, target), hard, soft)


def fit_limits(limits: ConnectionLimits, open_files: int) -> ConnectionLimits:
    """`limits` with the total cap lowered to what `open_files` descriptors
    allow, keeping some back for the hub's own files. When the total shrinks,
    one address may hold at most a quarter of it."""
    reserve = min(_RESERVED_FDS, open_files // 4)
    budget = max(1, open_files - reserve)
    if limits.max_total <= budget:
        return limits
    per_address = limits.max_per_address
    if per_address:
        per_address = min(per_address, max(1, budget // 4))
    return replace(limits, max_total=budget, max_per_address=per_address)


class ShedCounter:
    """Counts shed connections in the metrics, and logs a summary at most
    every 10 s: a flood must not flood the log too."""

    def __init__(self, metrics: HubMetrics) -> None:
        self._children = {
            reason: metrics.connections_shed.labels(reason) for reason in SHED_REASONS
        }
        self._unlogged: dict[str, int] = {}
        self._logged_at = 0.0

    def __call__(self, reason: str) -> None:
        self._children[reason].inc()
        if reason == HANDSHAKE_FAILED:
            return  # port scanners and TCP health checks: counted, not logged
        self._unlogged[reason] = self._unlogged.get(reason, 0) + 1
        now = time.monotonic()
        if now - self._logged_at >= _LOG_EVERY_S:
            event(log, "hub.connections_shed", logging.WARNING, **self._unlogged)
            self._unlogged, self._logged_at = {}, now


@dataclass(frozen=True, slots=True)
class Listener:
    """A listening socket and how its connections are served: TLS (the API
    port) or plain HTTP (the loopback metrics port)."""

    sock: socket.socket
    tls: ssl.SSLContext | ReloadingServerTls | None
    name: str


class Acceptor:
    """Accepts on one listening socket, admits each connection into the
    table, bounds its TLS handshake, and hands it to a fresh HTTP protocol.

    Closed like an asyncio Server (`close`, `wait_closed`) by uvicorn's
    shutdown; connections already handed over belong to uvicorn then.
    """

    def __init__(
        self,
        listener: Listener,
        table: ConnectionTable,
        limits: ConnectionLimits,
        make_protocol: Callable[[], GuardedHttpToolsProtocol],
        on_handshake: Callable[[bool], None] | None = None,
    ) -> None:
        self._listener = listener
        self._on_handshake = on_handshake  # called with whether the session was resumed
        self._table = table
        self._limits = limits
        self._make_protocol = make_protocol
        self._loop = asyncio.get_running_loop()
        # Handshakes in flight. Their owner is this acceptor: close() cancels
        # them, wait_closed() waits for them.
        self._handshakes: set[asyncio.Task[None]] = set()
        self._accept_errors = 0
        self._logged_accept_error_at = 0.0
        listener.sock.setblocking(False)
        self._accepting = self._loop.create_task(
            self._accept_forever(), name=f"accept:{listener.name}"
        )

    def close(self) -> None:
        self._accepting.cancel()
        for task in self._handshakes:
            task.cancel()
        self._listener.sock.close()

    async def wait_closed(self) -> None:
        await asyncio.gather(self._accepting, *self._handshakes, return_exceptions=True)

    async def _accept_forever(self) -> None:
        sock = self._listener.sock
        while True:
            try:
                conn, address = await self._loop.sock_accept(sock)
            except OSError as exc:
                await self._accept_failed(exc)
                continue
            self._admit(conn, address)
            for _ in range(_ACCEPT_BATCH):
                try:
                    conn, address = sock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    await self._accept_failed(exc)
                    break
                self._admit(conn, address)

    async def _accept_failed(self, exc: OSError) -> None:
        """Log (at most every 10 s) and pause, unless only that client failed.

        Out of file descriptors (EMFILE) or memory, the connection waits in
        the backlog: accepting again at once would spin.
        """
        if exc.errno in _ACCEPT_PEER_ERRORS:
            return
        self._accept_errors += 1
        now = time.monotonic()
        if now - self._logged_accept_error_at >= _LOG_EVERY_S:
            event(
                log,
                "hub.accept_failed",
                logging.ERROR,
                listener=self._listener.name,
                error=errno.errorcode.get(exc.errno or 0, str(exc.errno)),
                count=self._accept_errors,
                open_connections=self._table.total,
            )
            self._accept_errors, self._logged_accept_error_at = 0, now
        await asyncio.sleep(_ACCEPT_PAUSE_S)

    def _admit(self, conn: socket.socket, address: object) -> None:
        host = address[0] if isinstance(address, tuple) else ""
        slot = self._table.admit(address_key(str(host)), conn.close)
        if slot is None:
            _reset(conn)
            return
        conn.setblocking(False)
        task = self._loop.create_task(self._hand_over(conn, slot, self._loop.time()))
        slot.set_evict(task.cancel)
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _hand_over(self, conn: socket.socket, slot: Slot, accepted_at: float) -> None:
        """TLS (bounded), then the HTTP protocol owns the connection and the
        slot: it releases the slot when the connection closes."""
        protocol = self._make_protocol()
        protocol.guard(slot, self._limits, accepted_at)
        tls = self._listener.tls
        if isinstance(tls, ReloadingServerTls):
            tls = tls.context()
        try:
            if tls is None:
                await self._loop.connect_accepted_socket(lambda: protocol, conn)
            else:
                transport, _ = await self._loop.connect_accepted_socket(
                    lambda: protocol,
                    conn,
                    ssl=tls,
                    ssl_handshake_timeout=self._limits.handshake_timeout_s,
                    # A peer that never answers our close_notify holds the
                    # descriptor this long (the loop's default is 30 s).
                    ssl_shutdown_timeout=self._limits.handshake_timeout_s,
                )
                if self._on_handshake is not None:
                    ssl_object = transport.get_extra_info("ssl_object")
                    self._on_handshake(bool(getattr(ssl_object, "session_reused", False)))
        except asyncio.CancelledError:
            slot.release()
            conn.close()
            raise
        except Exception:  # a failed or timed-out handshake, a reset: the client's doing
            slot.release()
            conn.close()
            elapsed = self._loop.time() - accepted_at
            timed_out = elapsed >= self._limits.handshake_timeout_s * 0.99
            slot.shed(HANDSHAKE_TIMEOUT if timed_out else HANDSHAKE_FAILED)


def _reset(conn: socket.socket) -> None:
    """Close with a TCP reset: no TIME_WAIT is left behind for a refused peer."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket, shared by workers when the hub forks."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)


def parse_metrics_listen(text: str, *, allow_public: bool) -> tuple[str, int]:
    """`127.0.0.1:9464`, `[::1]:9464` or `localhost:9464` as (host, port).

    The metrics listener answers without a token, so it must be bound to a
    loopback address unless `allow_public` says the operator means it.

    Raises:
        ValueError: not HOST:PORT with an IP address (or localhost), or not
            loopback without allow_public; the message says which.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"expected HOST:PORT like 127.0.0.1:9464, got {text!r}")
    host = host.removeprefix("[").removesuffix("]")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"expected an IP address or localhost, got {host!r}") from None
    if not address.is_loopback and not allow_public:
        raise ValueError(
            f"{host} is not a loopback address: /metrics would be open to the network "
            "without a token (pass --metrics-listen-public if that is what you want)"
        )
    return str(address), int(port_text)
