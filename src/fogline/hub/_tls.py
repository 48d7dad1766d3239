"""Tell the ASGI app whose client certificate is on the connection.

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
import ssl
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fogline.security import device_id_from_cert

PEER_SCOPE_KEY: Final = "fogline.peer"


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

    def _remember_peer(self, transport: asyncio.BaseTransport) -> None:
        self._peer = peer_certificate(transport)

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


class ClientCertHttpToolsProtocol(_ClientCertScope, HttpToolsProtocol):
    """uvicorn's httptools protocol (the fast C parser), plus the client
    certificate in every scope."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._remember_peer(transport)
        super().connection_made(transport)
