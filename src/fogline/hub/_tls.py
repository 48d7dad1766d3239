"""The hub's TLS: its server context, and telling the ASGI app whose client
certificate is on the connection.

`server_tls_context` is the hub's one TLS configuration: TLS 1.2 or 1.3, and
for TLS 1.2 only ECDHE key exchange with an AEAD cipher (AES-GCM,
ChaCha20-Poly1305). uvicorn's default (`ssl_ciphers="TLSv1"`) offered TLS 1.2
clients CBC suites with SHA-1 MACs; TLS 1.3 suites are OpenSSL's defaults,
all AEAD.

uvicorn verifies client certificates (ssl_cert_reqs) but does not pass them
to the app. These subclasses of its HTTP protocols add the ASGI TLS
extension, `scope["extensions"]["tls"]["client_cert_chain"]`, with the peer
certificate the TLS layer already verified against the fleet CA, and
`scope["fogline.peer"]`: the device id and serial read from that certificate
once per connection, not once per request (a device keeps its connection
open between reports).

They hook the one place every request scope passes through: the assignment
of `self.scope` in the protocol. uvicorn is pinned in pyproject.toml;
tests/hub/test_tls_protocol.py fails loudly if an upgrade moves that
assignment.
"""

import asyncio
import contextlib
import logging
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fogline._log import event
from fogline.security import device_id_from_cert

from ._tickets import (
    TicketKeys,
    bind_sessions,
    issue_no_tickets,
    keep_sessions,
    share_ticket_key,
)
from ._trust import RELOAD_CHECK_S, file_signature

log = logging.getLogger("fogline.hub")

PEER_SCOPE_KEY: Final = "fogline.peer"
# TLS 1.2 suites (TLS 1.3 ignores this string): forward secrecy and AEAD only.
TLS12_CIPHERS: Final = "ECDHE+AESGCM:ECDHE+CHACHA20"


def server_tls_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """The hub's server context: its certificate, and client certificates
    verified against the fleet CA when sent.

    Client certificates are optional at the TLS layer so that operators can
    use tokens on the same port; the device API refuses requests without one.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    # A client-initiated renegotiation costs the server a handshake each time.
    context.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.load_cert_chain(str(cert), str(key))
    context.load_verify_locations(str(ca))
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


class ReloadingServerTls:
    """The server context, built again for new connections when the hub's
    certificate, key or CA bundle changes on disk (a rotation, or an
    operator's new certificate): connections already open keep theirs.

    A change is looked for at most every RELOAD_CHECK_S; a half-written set
    of files (a key not matching its certificate) keeps the previous context
    until the next look.

    Session tickets (see _tickets.py): with `tickets`, every context this
    builds encrypts them with the key all hub processes share for the
    current period, switched when the period changes; with
    `issue_tickets=False`, none are issued; with neither, OpenSSL's own
    per-process keys (a ticket resumes only on the worker that issued it).
    With `tickets` and `session_cache` N > 0, stateful tickets instead: the
    sessions stay in this process's cache (at most N) and a ticket is an id
    (see `keep_sessions`); a rebuilt context starts with an empty cache.
    """

    def __init__(
        self,
        cert: Path,
        key: Path,
        ca: Path,
        *,
        tickets: TicketKeys | None = None,
        issue_tickets: bool = True,
        session_cache: int = 0,
    ) -> None:
        self._paths = (cert, key, ca)
        self._session_cache = session_cache
        self._tickets = tickets if issue_tickets else None
        self._issue_tickets = issue_tickets
        self._period = self._tickets.period() if self._tickets is not None else 0
        self._signature = file_signature(*self._paths)
        self._context = self._build()
        self._checked_at = time.monotonic()

    def _build(self) -> ssl.SSLContext:
        context = server_tls_context(*self._paths)
        if not self._issue_tickets:
            issue_no_tickets(context)
        elif self._tickets is not None and bind_sessions(
            # Bound to the CA bundle this context trusts, and to one period:
            # a ticket never outlives the key that encrypted it.
            context,
            ca_bundle=self._paths[2].read_bytes(),
            lifetime_s=self._tickets.period_s,
        ):
            if self._session_cache > 0:
                keep_sessions(context, max_sessions=self._session_cache)
            share_ticket_key(context, self._tickets.key(self._period))
            # One ticket per handshake, not OpenSSL's two: a device reconnects
            # one connection at a time, and each ticket costs the hub an
            # encoding of the session (peer certificate included) and its
            # encryption on every handshake.
            context.num_tickets = 1
        return context

    def context(self) -> ssl.SSLContext:
        tickets = self._tickets
        if tickets is not None and (period := tickets.period()) != self._period:
            self._period = period
            share_ticket_key(self._context, tickets.key(period))
        now = time.monotonic()
        if now - self._checked_at < RELOAD_CHECK_S:
            return self._context
        self._checked_at = now
        signature = file_signature(*self._paths)
        if signature != self._signature:
            try:
                self._context = self._build()
            except (OSError, ssl.SSLError, ValueError) as exc:
                event(log, "hub.tls_reload_failed", logging.WARNING, error=str(exc))
                return self._context
            self._signature = signature
            event(log, "hub.tls_reloaded")
        return self._context


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """What the device API needs from a verified client certificate."""

    pem: str
    device_id: str | None
    serial_hex: str


def peer_certificate(transport: asyncio.BaseTransport) -> PeerCertificate | None:
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    cert = x509.load_der_x509_certificate(der)
    return PeerCertificate(
        pem=ssl.DER_cert_to_PEM_cert(der),
        device_id=device_id_from_cert(cert),
        serial_hex=format(cert.serial_number, "x"),
    )


class _ClientCertScope:
    """Adds the peer certificate to every request scope the protocol builds."""

    _peer: PeerCertificate | None = None
    _scope: Any = None
    _tls: ssl.SSLObject | None = None

    def _remember_peer(self, transport: asyncio.BaseTransport) -> None:
        self._peer = peer_certificate(transport)
        tls = transport.get_extra_info("ssl_object")
        # Only stateful tickets need it (see _keep_session).
        stateful = isinstance(tls, ssl.SSLObject) and tls.context.options & ssl.OP_NO_TICKET
        self._tls = tls if stateful and tls.context.num_tickets else None

    def _keep_session(self) -> None:
        """Mark the connection's TLS session closed, even when the device
        dropped the connection without a close_notify (an abort, a reset).

        OpenSSL drops from its session cache the session of a connection
        freed without having sent a close_notify: with stateful tickets
        (--tls-session-cache) a device that aborted could not resume. TLS 1.1
        and later allow resuming such a session (RFC 5246 7.2.1, RFC 8446);
        stateless tickets always did. The close_notify goes to a memory
        buffer nobody reads: the connection is gone."""
        tls, self._tls = self._tls, None
        if tls is not None:
            with contextlib.suppress(ssl.SSLError, ValueError, OSError):
                tls.unwrap()

    @property
    def scope(self) -> Any:
        return self._scope

    @scope.setter
    def scope(self, value: Any) -> None:
        if isinstance(value, dict):
            peer = self._peer
            chain = [peer.pem] if peer else []
            value.setdefault("extensions", {})["tls"] = {"client_cert_chain": chain}
            value[PEER_SCOPE_KEY] = peer
        self._scope = value


class ClientCertH11Protocol(_ClientCertScope, H11Protocol):
    """uvicorn's h11 protocol, plus the client certificate in every scope."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._remember_peer(transport)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._keep_session()
        super().connection_lost(exc)


class ClientCertHttpToolsProtocol(_ClientCertScope, HttpToolsProtocol):
    """uvicorn's httptools protocol (the fast C parser), plus the client
    certificate in every scope."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._remember_peer(transport)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._keep_session()
        super().connection_lost(exc)
