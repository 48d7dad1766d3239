"""Guards the uvicorn subclass that hands the client certificate to the app.

If a uvicorn upgrade moves where the request scope is built, these tests
fail instead of the device API silently seeing no certificates.
"""

import asyncio
import ssl
import threading

import httpx
import pytest
import uvicorn
from cryptography import x509

from fogline.hub import ClientCertH11Protocol, ClientCertHttpToolsProtocol
from fogline.hub._tls import PEER_SCOPE_KEY
from fogline.security import (
    CertificateAuthority,
    check_csr,
    generate_device_key,
    make_csr,
    write_private_key,
    write_public_file,
)
from tests.support.processes import free_port, tls, wait_until


async def echo_cert(scope, receive, send):
    if scope["type"] != "http":
        return
    chain = scope.get("extensions", {}).get("tls", {}).get("client_cert_chain", [])
    peer = scope.get(PEER_SCOPE_KEY)
    peer_line = f"{peer.device_id} {peer.serial_hex}" if peer else "no peer"
    body = ((chain[0] if chain else "none") + "\n" + peer_line).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority.load_or_create(root)
    ca.issue_server_cert(root / "srv-key.pem", root / "srv.pem", ["127.0.0.1"])
    key = generate_device_key()
    issued = ca.issue_device_cert(check_csr(make_csr(key, "d").decode()).csr, "device-42")
    write_private_key(root / "dev-key.pem", key)
    write_public_file(root / "dev.pem", issued.pem)
    return root


# The hub serves with uvloop + httptools; h11 stays supported as the fallback.
@pytest.fixture(
    scope="module",
    params=[(ClientCertHttpToolsProtocol, "uvloop"), (ClientCertH11Protocol, "asyncio")],
    ids=["httptools-uvloop", "h11-asyncio"],
)
def server(pki, request):
    protocol, loop = request.param
    port = free_port()
    config = uvicorn.Config(
        echo_cert,
        host="127.0.0.1",
        port=port,
        loop=loop,
        http=protocol,
        ssl_keyfile=str(pki / "srv-key.pem"),
        ssl_certfile=str(pki / "srv.pem"),
        ssl_ca_certs=str(pki / "ca.pem"),
        ssl_cert_reqs=ssl.CERT_OPTIONAL,
        log_config=None,
        lifespan="off",
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    wait_until(lambda: srv.started, 10, "uvicorn")
    yield f"https://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)
    # uvicorn's loop="uvloop" set uvloop's policy for the whole process.
    asyncio.set_event_loop_policy(None)


def test_app_sees_the_verified_client_certificate(server, pki):
    context = tls(pki / "ca.pem", pki / "dev.pem", pki / "dev-key.pem")
    with httpx.Client(verify=context) as client:
        for _ in range(2):  # also on a kept-alive connection's second request
            pem, peer = client.get(server).text.rsplit("\n", 1)
            cert = x509.load_pem_x509_certificate(pem.encode())
            assert "CN=device-42" in cert.subject.rfc4514_string()
            assert peer == f"device-42 {cert.serial_number:x}"


def test_app_sees_no_certificate_when_none_is_sent(server, pki):
    assert httpx.get(server, verify=tls(pki / "ca.pem")).text == "none\nno peer"
