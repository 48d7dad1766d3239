"""The hub's CPU for one TLS handshake: full against resumed, with a device
certificate, in one process over memory BIOs (no sockets, no event loop, no
HTTP): the floor under `bench_hub_scale`'s new-connection rows.

The server side is the hub's own context (`ReloadingServerTls` with shared
ticket keys, as `fogline hub serve` builds it); the client is the node's
(`fogline.hubclient.resuming_client_context`) with a device certificate
from the fleet CA. Only the server's thread CPU is counted: its handshake,
reading one request byte and writing one answer byte (which sends the
ticket). A variant without a client certificate shows what the certificate
costs: OpenSSL decodes it from every ticket it opens and, while making each
ticket, encodes and decodes the session once more.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_tls_resumption --handshakes 2000 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from benchmarks._common import git_revision, machine, table
from fogline.hub._tickets import TicketKeys
from fogline.hub._tls import ReloadingServerTls
from fogline.hubclient import resuming_client_context
from fogline.security import CertificateAuthority, make_csr, write_private_key, write_public_file

MAX_ROUNDS = 10  # a TLS 1.3 handshake takes two; more is a bug, not slowness


def _pump(source: ssl.MemoryBIO, sink: ssl.MemoryBIO) -> None:
    data = source.read()
    if data:
        sink.write(data)


def handshake(
    server: ssl.SSLContext, client: ssl.SSLContext, session: ssl.SSLSession | None
) -> tuple[float, ssl.SSLSession | None, bool]:
    """One connection: (server CPU seconds, the client's session after it, resumed)."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    conn = client.wrap_bio(c_in, c_out, server_hostname="localhost", session=session)
    peer = server.wrap_bio(s_in, s_out, server_side=True)
    cpu = 0.0
    for _ in range(MAX_ROUNDS):
        try:
            conn.do_handshake()
            client_done = True
        except ssl.SSLWantReadError:
            client_done = False
        _pump(c_out, s_in)
        t0 = time.thread_time()
        try:
            peer.do_handshake()
            server_done = True
        except ssl.SSLWantReadError:
            server_done = False
        cpu += time.thread_time() - t0
        _pump(s_out, c_in)
        if client_done and server_done:
            break
    else:
        raise RuntimeError("handshake did not finish")
    conn.write(b"q")
    _pump(c_out, s_in)
    t0 = time.thread_time()
    peer.read(1)
    peer.getpeercert(binary_form=True)  # what the hub reads for every connection
    peer.write(b"a")
    cpu += time.thread_time() - t0
    _pump(s_out, c_in)
    conn.read(1)
    return cpu, conn.session, peer.session_reused


def _files(root: Path) -> tuple[Path, Path, Path, Path, Path]:
    ca = CertificateAuthority.load_or_create(root)
    ca_pem = root / CertificateAuthority.CERT_FILE
    ca.issue_server_cert(root / "hub-key.pem", root / "hub.pem", ["localhost"])
    key = ec.generate_private_key(ec.SECP256R1())
    write_private_key(root / "device-key.pem", key)
    issued = ca.issue_device_cert(x509.load_pem_x509_csr(make_csr(key, "bench")), "dev-bench")
    write_public_file(root / "device.pem", issued.pem)
    return (
        ca_pem,
        root / "hub.pem",
        root / "hub-key.pem",
        root / "device.pem",
        root / "device-key.pem",
    )


def measure(root: Path, handshakes: int, with_cert: bool) -> dict[str, float]:
    ca, cert, key, device_cert, device_key = _files(root)
    keys = TicketKeys(os.urandom(32), 3600)
    server = ReloadingServerTls(cert, key, ca, tickets=keys).context()
    resuming = resuming_client_context(ca)
    plain = ssl.create_default_context(cafile=str(ca))
    if with_cert:
        for context in (resuming, plain):
            context.load_cert_chain(str(device_cert), str(device_key))
    out: dict[str, float] = {}
    for mode, client in (("full", plain), ("resumed", resuming)):
        _, session, _ = handshake(server, client, None)
        total, reused = 0.0, 0
        for _ in range(handshakes):
            cpu, new, was_resumed = handshake(
                server, client, session if mode == "resumed" else None
            )
            total += cpu
            reused += was_resumed
            if mode == "resumed":
                session = new
        if mode == "resumed" and reused < handshakes:
            raise RuntimeError(f"only {reused} of {handshakes} handshakes resumed")
        out[mode] = total / handshakes * 1000
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handshakes", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not 1 <= args.handshakes <= 100_000 or not 1 <= args.repeats <= 20:
        raise SystemExit("--handshakes 1..100000, --repeats 1..20")
    rows = []
    with tempfile.TemporaryDirectory(prefix="fogline-bench-tls-") as tmp:
        for repeat in range(args.repeats):
            for with_cert in (True, False):
                root = Path(tmp) / f"{repeat}-{with_cert}"
                root.mkdir()
                ms = measure(root, args.handshakes, with_cert)
                load = "/".join(f"{v:.1f}" for v in os.getloadavg())
                rows.append(
                    (
                        repeat + 1,
                        "device certificate" if with_cert else "none",
                        f"{ms['full']:.3f}",
                        f"{ms['resumed']:.3f}",
                        f"{ms['full'] / ms['resumed']:.2f}",
                        load,
                    )
                )
                print(f"  {rows[-1]}", file=sys.stderr)
    print(f"\n## TLS handshake CPU on the hub (git {git_revision()})\n")
    print(f"Machine: {machine()}, {ssl.OPENSSL_VERSION}  ")
    print(f"Command: `{' '.join(['bench_tls_resumption', *sys.argv[1:]])}`\n")
    print(
        table(
            [
                "repeat",
                "client certificate",
                "full ms (server CPU)",
                "resumed ms",
                "full / resumed",
                "load 1/5/15",
            ],
            rows,
        )
    )
    full = [float(r[2]) for r in rows if r[1] != "none"]
    resumed = [float(r[3]) for r in rows if r[1] != "none"]
    print(
        f"\nWith a device certificate, medians: full {statistics.median(full):.3f} ms, "
        f"resumed {statistics.median(resumed):.3f} ms of server CPU per handshake."
    )


if __name__ == "__main__":
    main()
