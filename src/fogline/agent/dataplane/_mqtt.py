"""The node's link to its MQTT broker of record (Mosquitto), through paho-mqtt.

paho runs inside the agent's asyncio event loop, through its external-loop
API, not in a network thread of its own (`loop_start`): the socket is
registered with `loop.add_reader` (-> `loop_read`), with `loop.add_writer`
(-> `loop_write`) only while paho holds bytes the kernel would not take, and
a task calls `loop_misc` once a second for keepalive pings and dead
connections. With no second thread the event loop shares the GIL with no
one, and nothing crosses threads: no lock, no `call_soon_threadsafe`, no
socketpair write per `publish()`.

Incoming messages are appended to a backlog inside `loop_read` and a
consumer task drains it in batches, so one wake-up handles a burst.
`publish()` writes to the socket before it returns (one `send()`), instead
of on the loop's next turn.

paho reconnects by itself only in its own thread, so the bridge does it:
it opens the TCP connection without blocking the loop (a host name is
resolved in the default executor, an IP address is not), hands the socket to
paho, which sends CONNECT, and retries forever with a backoff of 1 s
doubling to 30 s. Subscriptions are renewed on every CONNACK.

For `mqtts://` the bridge also does the TLS handshake without blocking the
loop (paho's own does it blocking, inside `reconnect()`), then hands paho the
finished `SSLSocket`; paho reads and writes it as any socket and turns TLS's
want-read/want-write into would-block. TLS decrypts whole records, so bytes
can wait inside the SSL object while the socket itself is not readable:
after each read the bridge checks `pending()` and reads on.
"""

import asyncio
import collections
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fogline._log import event

from ._settings import MqttSettings

log = logging.getLogger("fogline.agent.mqtt")
MAX_BATCH: Final = 2000
MAX_BACKLOG: Final = 200_000  # beyond this the node sheds load instead of its memory
RECONNECT_MIN_S: Final = 1.0
RECONNECT_MAX_S: Final = 30.0
CONNECT_TIMEOUT_S: Final = 5.0
MISC_INTERVAL_S: Final = 1.0  # loop_misc: keepalive pings, PINGRESP and CONNACK timeouts
# Packets read per readable event before the loop gets control back (the
# consumer runs, then the still-registered reader fires again).
READ_BUDGET: Final = 256


Handler = Callable[[Sequence[tuple[str, bytes]]], Awaitable[None]]


class _PahoClient(mqtt.Client):
    """paho's client, handed a socket the bridge has already connected.

    paho opens its socket with a blocking `socket.create_connection` inside
    `reconnect()`, which would stall the event loop for up to the connect
    timeout on an unreachable broker. The bridge connects with
    `loop.sock_connect` and leaves the socket here; paho takes it from
    `_create_socket_connection` and carries on as usual (non-blocking mode,
    `on_socket_open`, CONNECT). That method is private to paho (2.x, as
    pinned): were it renamed, paho would open its own, blocking, connection
    and `_connect` would close the unused socket.
    """

    connected_socket: socket.socket | None = None

    def _create_socket_connection(self) -> socket.socket:
        sock, self.connected_socket = self.connected_socket, None
        if sock is None:
            raise ConnectionError("MqttBridge connects the socket before calling reconnect()")
        return sock


class MqttBridge:
    def __init__(self, settings: MqttSettings, handler: Handler) -> None:
        self.settings = settings
        self.handler = handler
        self.connected = False
        self.dropped = 0
        self.received = 0
        self._filters: dict[str, int] = {}
        self._backlog: collections.deque[tuple[str, bytes]] = collections.deque()
        self._seen = 0  # messages handed over by loop_read, kept or dropped
        self._wake = asyncio.Event()  # the backlog has messages
        self._closed = asyncio.Event()  # paho closed the socket: reconnect
        self._acked = False  # a CONNACK came on the current connection
        self._stopping = False
        self._sending_now = False  # in publish() & co: skip add_writer, _flush writes
        self._fd: int | None = None  # the socket as registered with the loop
        self._loop: asyncio.AbstractEventLoop | None = None
        protocol = mqtt.MQTTv5 if settings.protocol == 5 else mqtt.MQTTv311
        self._client = _PahoClient(
            CallbackAPIVersion.VERSION2, client_id=settings.client_id, protocol=protocol
        )
        if settings.username:
            self._client.username_pw_set(settings.username, settings.password)
        self._tls = settings.ssl_context() if settings.is_tls else None
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_socket_open = self._on_socket_open
        self._client.on_socket_close = self._on_socket_close
        self._client.on_socket_register_write = self._on_socket_register_write
        self._client.on_socket_unregister_write = self._on_socket_unregister_write
        self._client.max_queued_messages_set(10_000)

    # -- paho callbacks, all on the event loop's thread --------------------------

    def _on_socket_open(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        # Local actions are small messages that must leave at once: without
        # TCP_NODELAY each waits for the previous segment's ACK (Nagle).
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert self._loop is not None  # sockets are opened by run()'s task only
        self._fd = sock.fileno()
        self._loop.add_reader(self._fd, self._on_readable)

    def _on_socket_close(self, _client: mqtt.Client, _userdata: Any, _sock: Any) -> None:
        self._unwatch()
        self._closed.set()

    def _on_socket_register_write(self, _client: mqtt.Client, _userdata: Any, _sock: Any) -> None:
        # From publish() & co the bytes are written right after paho queued
        # them (_flush), so no writer is needed unless the kernel refuses them.
        if not self._sending_now:
            self._watch_writable()

    def _on_socket_unregister_write(self, _client: mqtt.Client, _userdata: Any, _sock: Any) -> None:
        if self._loop is not None and self._fd is not None:
            self._loop.remove_writer(self._fd)

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any = None
    ) -> None:
        if getattr(reason, "is_failure", False):
            event(log, "mqtt.connect_refused", logging.WARNING, reason=str(reason))
            return
        self.connected = True
        self._acked = True
        event(log, "mqtt.connected", url=self.settings.url)
        if self._filters:
            client.subscribe(list(self._filters.items()))

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any = None
    ) -> None:
        self.connected = False
        level = logging.INFO if self._stopping else logging.WARNING
        event(log, "mqtt.disconnected", level, reason=str(reason))

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._seen += 1
        if len(self._backlog) >= MAX_BACKLOG:
            self.dropped += 1
            return
        raw = message.payload
        self._backlog.append((message.topic, raw if isinstance(raw, bytes) else bytes(raw)))
        self.received += 1
        self._wake.set()  # a no-op while set: one wake-up per burst

    # -- the loop's readiness callbacks -------------------------------------------

    def _on_readable(self) -> None:
        # loop_read() handles one packet per call for QoS 0 (it ignores its
        # max_packets): read on while the last call produced a message, so a
        # burst costs one loop turn, not one per message. A call that got no
        # message (would block, a partial packet, an ack) ends the turn; the
        # reader stays registered and fires again if bytes remain.
        client = self._client
        for _ in range(READ_BUDGET):
            seen = self._seen
            if client.loop_read() != mqtt.MQTT_ERR_SUCCESS or self._seen == seen:
                break
        sock = client.socket()
        if isinstance(sock, ssl.SSLSocket) and sock.pending() and self._loop is not None:
            # Decrypted bytes the kernel no longer signals: read them next turn.
            self._loop.call_soon(self._on_readable)

    def _on_writable(self) -> None:
        self._client.loop_write()  # paho unregisters the writer once it has sent all

    def _watch_writable(self) -> None:
        if self._loop is not None and self._fd is not None:
            self._loop.add_writer(self._fd, self._on_writable)

    def _unwatch(self) -> None:
        if self._loop is not None and self._fd is not None:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        self._fd = None

    @contextlib.contextmanager
    def _sending(self) -> Iterator[None]:
        """Around a paho call that queues packets: write them before returning."""
        self._sending_now = True
        try:
            yield
        finally:
            self._sending_now = False
            self._flush()

    def _flush(self) -> None:
        client = self._client
        if client.want_write():
            client.loop_write()  # on error paho closes the socket (on_socket_close)
        if client.want_write() and client.socket() is not None:
            # The kernel took only part of it. paho already counts the writer
            # as registered (its callback was skipped), so register it here.
            self._watch_writable()

    # -- the asyncio side ---------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        """Raises:
        ConnectionError: paho refused the message (not connected, queue full).
        """
        with self._sending():
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"publish to {topic}: {mqtt.error_string(info.rc)}")

    def set_filters(self, filters: dict[str, int]) -> None:
        """Subscribe to new filters and unsubscribe from dropped ones."""
        old, self._filters = self._filters, dict(filters)
        if not self.connected:
            return  # _on_connect subscribes to all of them
        with self._sending():
            for topic in old.keys() - filters.keys():
                self._client.unsubscribe(topic)
            for topic, qos in filters.items():
                if old.get(topic) != qos:
                    self._client.subscribe(topic, qos)

    async def run(self) -> None:
        """Connect (retrying forever) and feed message batches to the handler."""
        host, port = self.settings.host_port
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        # Only records the parameters: the connections are opened by _stay_connected.
        self._client.connect_async(host, port, keepalive=self.settings.keepalive_s)
        link = asyncio.create_task(self._stay_connected(host, port), name="mqtt-link")
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()  # before draining: later appends wake again
                while self._backlog:
                    batch = [
                        self._backlog.popleft() for _ in range(min(MAX_BATCH, len(self._backlog)))
                    ]
                    await self.handler(batch)
        finally:
            link.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await link
            self._shut_down()

    async def _stay_connected(self, host: str, port: int) -> None:
        delay = RECONNECT_MIN_S
        while True:
            self._acked = False
            try:
                await self._connect(host, port)
            except Exception as exc:  # whatever failed, retry later
                event(
                    log,
                    "mqtt.connect_failed",
                    logging.WARNING,
                    url=self.settings.url,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_s=delay,
                )
            else:
                await self._serve_connection()
                if self._acked:
                    delay = RECONNECT_MIN_S  # it was up: start the backoff over
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _connect(self, host: str, port: int) -> None:
        """Open the TCP connection and have paho send CONNECT on it.

        Raises:
            OSError: no address of `host` accepted a connection in time, or
                the TLS handshake failed (ssl.SSLError: an untrusted broker,
                a name that does not match) or timed out.
        """
        sock: socket.socket = await _open_tcp(host, port)
        if self._tls is not None:
            sock = await _tls_handshake(self._tls, sock, host)
        self._client.connected_socket = sock
        try:
            # Closes any previous socket, takes this one (on_socket_open), queues CONNECT.
            self._client.reconnect()
        finally:
            if self._client.connected_socket is not None:  # paho did not take it
                self._client.connected_socket = None
                sock.close()
        self._closed.clear()  # from now on, set when paho closes this socket

    async def _serve_connection(self) -> None:
        """Until paho closes the socket: call loop_misc once a second."""
        while not self._closed.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(MISC_INTERVAL_S):
                    await self._closed.wait()
            self._client.loop_misc()

    def _shut_down(self) -> None:
        self._stopping = True
        if self._client.socket() is not None:
            with self._sending():
                self._client.disconnect()  # written at once; paho then closes the socket
        sock = self._client.socket()
        if sock is not None:  # DISCONNECT could not be written: drop the connection anyway
            self._unwatch()
            sock.close()
        self.connected = False


async def _open_tcp(host: str, port: int) -> socket.socket:
    """A connected, non-blocking TCP socket to the first address of `host` that answers.

    Raises:
        OSError: resolution failed, or every address refused or timed out.
    """
    try:  # an IP address: no lookup, no executor thread
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    error: OSError = OSError(f"no address for {host}")
    for family, kind, proto, _name, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await asyncio.get_running_loop().sock_connect(sock, address)
        except OSError as exc:  # TimeoutError included
            sock.close()
            error = exc
        except BaseException:
            sock.close()
            raise
        else:
            return sock
    raise error


async def _tls_handshake(context: ssl.SSLContext, sock: socket.socket, host: str) -> ssl.SSLSocket:
    """TLS over the connected non-blocking `sock`, the broker's certificate
    checked for `host`, without blocking the loop.

    Raises:
        ssl.SSLError: the handshake failed (untrusted or misnamed broker).
        TimeoutError: it did not finish within CONNECT_TIMEOUT_S.
    """
    loop = asyncio.get_running_loop()
    try:
        # Takes over the descriptor: from here on, closing `tls` closes the connection.
        tls = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    except BaseException:
        sock.close()
        raise
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            while True:
                try:
                    tls.do_handshake()
                    return tls
                except ssl.SSLWantReadError:
                    await _ready(loop, tls, writable=False)
                except ssl.SSLWantWriteError:
                    await _ready(loop, tls, writable=True)
    except BaseException:
        tls.close()
        raise


async def _ready(loop: asyncio.AbstractEventLoop, sock: socket.socket, *, writable: bool) -> None:
    """Wait until `sock` is readable (or writable)."""
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    fd = sock.fileno()
    if writable:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)
