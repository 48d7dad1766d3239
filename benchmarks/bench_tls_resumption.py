"""The hub's CPU for one TLS handshake: full against resumed, with a device
certificate, in one process over memory BIOs (no sockets, no event loop, no
HTTP): the floor under `bench_hub_scale`'s new-connection rows.

The server side is the hub's own context (`ReloadingServerTls` with shared
ticket keys, as `fogline hub serve` builds it); the client is the node's
(`fogline.hubclient.resuming_client_context`) with a device certificate
from the fleet CA. Only the server's thread CPU is counted: its handshake,
reading one request byte, writing one answer byte (which sends the ticket)
and its close_notify. A variant without a client certificate shows what the
certificate costs: OpenSSL decodes it from every ticket it opens and, while
making each ticket, encodes and decodes the session once more.

`--tickets stateless,stateful` (#18): the hub's stateless tickets (the
session, encrypted, in the ticket) against stateful ones
(`--tls-session-cache`: the session stays in the server's cache and the
ticket is its id), alternated in the same run. `--cache-memory N` also
measures the resident memory of N sessions with a client certificate in
the stateful cache (N full handshakes, each decoding its certificate).

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_tls_resumption --handshakes 2000 --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
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
    session = conn.session
    # The client closes; the hub answers with its own close_notify (a
    # session whose connection ends without one leaves OpenSSL's cache).
    with contextlib.suppress(ssl.SSLWantReadError):
        conn.unwrap()
    _pump(c_out, s_in)
    t0 = time.thread_time()
    with contextlib.suppress(ssl.SSLWantReadError):
        peer.unwrap()
    cpu += time.thread_time() - t0
    return cpu, session, peer.session_reused


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


CACHE_SIZE = 20_000  # the stateful variant's --tls-session-cache


def server_context(
    ca: Path, cert: Path, key: Path, tickets: str, cache: int = CACHE_SIZE
) -> ssl.SSLContext:
    keys = TicketKeys(os.urandom(32), 3600)
    cache = cache if tickets == "stateful" else 0
    return ReloadingServerTls(cert, key, ca, tickets=keys, session_cache=cache).context()


def measure(root: Path, handshakes: int, with_cert: bool, tickets: str) -> dict[str, float]:
    ca, cert, key, device_cert, device_key = _files(root)
    server = server_context(ca, cert, key, tickets)
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
    out["cached"] = server.session_stats()["number"]
    return out


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _heap_kb() -> float:
    """Bytes malloc has handed out and not had back (glibc mallinfo2, every
    arena), in KB: what OpenSSL holds, without the allocator's free pages."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return (info.uordblks + info.hblkhd) / 1024


def cache_memory(root: Path, sessions: int) -> dict[str, float]:
    """KB of heap per session in the stateful cache, for sessions
    from full handshakes (each holds the certificate it decoded) and from
    resumptions (sharing it): `sessions` handshakes on a context caching
    them, less the same on one caching a single session (whatever else the
    loop leaves behind in this process counts in both)."""
    ca, cert, key, device_cert, device_key = _files(root)
    out: dict[str, float] = {}
    for mode in ("full", "resumed"):
        growth = {}
        for cache in (1, sessions + 10):
            server = server_context(ca, cert, key, "stateful", cache)
            # A plain context resumes nothing unless given a session.
            client = ssl.create_default_context(cafile=str(ca))
            client.load_cert_chain(str(device_cert), str(device_key))
            _, session, _ = handshake(server, client, None)
            gc.collect()
            before = _heap_kb()
            for _ in range(sessions):
                _, new, _ = handshake(server, client, session if mode == "resumed" else None)
                session = new
            gc.collect()
            growth[cache] = _heap_kb() - before
            cached = server.session_stats()["number"]
            if cached != min(cache, sessions + 1):
                raise RuntimeError(f"{cached} sessions cached, expected {min(cache, sessions + 1)}")
        out[mode] = (growth[sessions + 10] - growth[1]) / sessions
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handshakes", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tickets", default="stateless", help="stateless and/or stateful")
    parser.add_argument("--cache-memory", type=int, default=0, help="sessions (0: not measured)")
    args = parser.parse_args()
    if not 1 <= args.handshakes <= 100_000 or not 1 <= args.repeats <= 20:
        raise SystemExit("--handshakes 1..100000, --repeats 1..20")
    variants = [t.strip() for t in args.tickets.split(",") if t.strip()]
    if not variants or not set(variants) <= {"stateless", "stateful"}:
        raise SystemExit("--tickets takes stateless and/or stateful")
    if not 0 <= args.cache_memory <= CACHE_SIZE:
        raise SystemExit(f"--cache-memory 0..{CACHE_SIZE}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="fogline-bench-tls-") as tmp:
        for repeat in range(args.repeats):
            for with_cert in (True, False):
                # Alternated, the first variant first on odd repeats: load hits both.
                for tickets in variants if repeat % 2 == 0 else variants[::-1]:
                    root = Path(tmp) / f"{repeat}-{with_cert}-{tickets}"
                    root.mkdir()
                    ms = measure(root, args.handshakes, with_cert, tickets)
                    load = "/".join(f"{v:.1f}" for v in os.getloadavg())
                    rows.append(
                        (
                            repeat + 1,
                            tickets,
                            "device certificate" if with_cert else "none",
                            f"{ms['full']:.3f}",
                            f"{ms['resumed']:.3f}",
                            f"{ms['full'] / ms['resumed']:.2f}",
                            f"{ms['cached']:.0f}",
                            load,
                        )
                    )
                    print(f"  {rows[-1]}", file=sys.stderr)
        memory = None
        if args.cache_memory:
            root = Path(tmp) / "memory"
            root.mkdir()
            memory = cache_memory(root, args.cache_memory)
    print(f"\n## TLS handshake CPU on the hub (git {git_revision()})\n")
    print(f"Machine: {machine()}, {ssl.OPENSSL_VERSION}  ")
    print(f"Command: `{' '.join(['bench_tls_resumption', *sys.argv[1:]])}`\n")
    print(
        table(
            [
                "repeat",
                "tickets",
                "client certificate",
                "full ms (server CPU)",
                "resumed ms",
                "full / resumed",
                "sessions cached",
                "load 1/5/15",
            ],
            rows,
        )
    )
    for tickets in variants:
        mine = [r for r in rows if r[1] == tickets and r[2] != "none"]
        print(
            f"\n{tickets} tickets, with a device certificate, medians: full "
            f"{statistics.median(float(r[3]) for r in mine):.3f} ms, resumed "
            f"{statistics.median(float(r[4]) for r in mine):.3f} ms of server CPU per handshake."
        )
    if memory is not None:
        print(
            f"\nStateful cache, {args.cache_memory} sessions with a device certificate: "
            f"{memory['full']:.1f} KB of heap each from full handshakes, "
            f"{memory['resumed']:.1f} KB from resumptions."
        )


if __name__ == "__main__":
    main()
