"""A client TLS context that resumes its last session with the hub, so a node
whose connection was closed (an idle timeout, a NAT that forgot it) pays an
abbreviated handshake instead of a full mTLS one (issue #18).

httpx (through anyio, or a plain socket) and asyncio call
`context.wrap_bio` / `context.wrap_socket` without a `session`; this
context passes the last session it recorded for that server name, and
records the session of each connection once the hub's ticket has arrived
(TLS 1.3 sends tickets after the handshake, with the first data read).

The sessions live in the context: a node builds a new context when its
certificate or the hub's CA bundle changes, and with it starts with no
sessions (a session carries the certificate it was made with). Whether the
hub accepts a ticket is the hub's decision; when it does not, OpenSSL does
a full handshake, with nothing for the caller to do.
"""

import ssl
from collections import OrderedDict
from pathlib import Path
from typing import Any, Final

from ._errors import TrustBundleError

_MAX_HOSTS: Final = 64  # a node talks to one hub; a bound all the same
# What a connection has done for its context: nothing yet (0), counted and
# looked for a ticket n times (n), recorded or given up (_DONE). The hub sends
# its ticket before its first answer; a hub that sends none (--no-tls-tickets)
# is not asked again on every read of a kept-alive connection.
_UNCOUNTED, _DONE = 0, -1
_MAX_LOOKS: Final = 8


class _RecordingSSLObject(ssl.SSLObject):
    """An SSLObject (asyncio, anyio) that hands its session to its context
    once a ticket has arrived."""

    _state = _UNCOUNTED

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        data = super().read(len, buffer)
        if self._state != _DONE:
            self._state = _record(self, self._state)
        return data


class _RecordingSSLSocket(ssl.SSLSocket):
    """An SSLSocket (blocking httpx) that does the same."""

    _state = _UNCOUNTED

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        data = super().read(len, buffer)
        if self._state != _DONE:
            self._state = _record(self, self._state)
        return data


def _record(conn: ssl.SSLObject | ssl.SSLSocket, state: int) -> int:
    """Count the connection once (resumed or not), and hand its session to
    its context once the hub sent a ticket of its own on it: a resumed
    connection first shows the session it resumed, then the new one."""
    context = conn.context
    if conn.server_side or not isinstance(context, ResumingContext):
        return _DONE
    host = conn.server_hostname
    if state == _UNCOUNTED:
        context.connections += 1
        context.resumed += bool(conn.session_reused)
    session = conn.session
    if session is None or not session.has_ticket or session == context.session_for(host):
        return state + 1 if state + 1 < _MAX_LOOKS else _DONE
    context.remember(host, session)
    return _DONE


class ResumingContext(ssl.SSLContext):
    """A client SSLContext that resumes the last session for each server name.

    Build it with `resuming_client_context` (the same checks as
    `ssl.create_default_context`).
    """

    sslobject_class = _RecordingSSLObject
    sslsocket_class = _RecordingSSLSocket

    def __init__(self, protocol: ssl._SSLMethod = ssl.PROTOCOL_TLS_CLIENT) -> None:
        super().__init__()
        self._sessions: OrderedDict[str | None, ssl.SSLSession] = OrderedDict()
        # Connections that read data, and how many of them resumed a session
        # (read by tests and benchmarks).
        self.connections = 0
        self.resumed = 0

    def remember(self, host: str | None, session: ssl.SSLSession) -> None:
        """Offer `session` on the next connection to `host`."""
        self._sessions[host] = session
        self._sessions.move_to_end(host)
        while len(self._sessions) > _MAX_HOSTS:
            self._sessions.popitem(last=False)

    def forget(self) -> None:
        """Offer no session until a new one is recorded."""
        self._sessions.clear()

    def session_for(self, host: str | None) -> ssl.SSLSession | None:
        return self._sessions.get(host)

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        host = _host(server_hostname)
        if session is None and not server_side:
            session = self._sessions.get(host)
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)

    def wrap_socket(
        self,
        sock: Any,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        host = _host(server_hostname)
        if session is None and not server_side:
            session = self._sessions.get(host)
        return super().wrap_socket(
            sock,
            server_side,
            do_handshake_on_connect,
            suppress_ragged_eofs,
            server_hostname,
            session,
        )


def _host(server_hostname: str | bytes | None) -> str | None:
    if isinstance(server_hostname, bytes):
        return server_hostname.decode("ascii", "replace")
    return server_hostname


def resuming_client_context(
    cafile: Path | None = None, cadata: str | None = None
) -> ResumingContext:
    """A client context that verifies the server against `cafile` or
    `cadata` (as `ssl.create_default_context` does: hostname checked,
    certificate required) and resumes sessions.

    Raises:
        TrustBundleError: the bundle cannot be read or holds no PEM certificate.
    """
    context = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=str(cafile) if cafile else None, cadata=cadata)
    except ssl.SSLError as exc:  # before OSError: SSLError is one
        where = cafile if cafile else "the CA bundle given"
        raise TrustBundleError(
            f"{where}: not a CA bundle to verify the hub with: expected PEM certificates"
            f" ({exc.reason or exc})"
        ) from None
    except OSError as exc:
        raise TrustBundleError(f"{cafile}: cannot read the CA bundle: {exc.strerror}") from None
    return context
