"""Tell the ASGI app whose client certificate is on the connection.

uvicorn verifies client certificates (ssl_cert_reqs) but does not pass them
to the app. This subclass of its h11 protocol adds the ASGI TLS extension,
`scope["extensions"]["tls"]["client_cert_chain"]`, with the peer certificate
the TLS layer already verified against the fleet CA.

It hooks the one place every request scope passes through: the assignment
of `self.scope` in `H11Protocol.handle_events`. uvicorn is pinned in
pyproject.toml; tests/hub/test_tls_protocol.py fails loudly if an upgrade
moves that assignment.
"""

import asyncio
import ssl
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


def peer_certificate_pem(transport: asyncio.BaseTransport) -> str | None:
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return ssl.DER_cert_to_PEM_cert(der) if der else None


class ClientCertH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus the client certificate in every scope."""

    _client_cert_pem: str | None = None
    _scope: Any = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._client_cert_pem = peer_certificate_pem(transport)
        super().connection_made(transport)

    @property
    def scope(self) -> Any:
        return self._scope

    @scope.setter
    def scope(self, value: Any) -> None:
        if isinstance(value, dict):
            chain = [self._client_cert_pem] if self._client_cert_pem else []
            value.setdefault("extensions", {})["tls"] = {"client_cert_chain": chain}
        self._scope = value
