"""The node's CPU to download one release archive over HTTPS (#18: a device
update's cost is mostly the device's own, and the download is part of it).

Starts nginx on 127.0.0.1 serving `--size-mb` of random bytes over TLS (a
certificate of a throwaway CA), then downloads it `--count` times on one
kept-alive connection per repetition, each client in a child process of its
own, its CPU read from the child's rusage:

    agent        the agent's path: `ThreadedHttpArtifactSource.fetch` (a
                 blocking httpx client in a worker thread, progress handed
                 to the event loop) with the agent's resuming TLS context,
                 writing the partial file in WRITE_BYTES writes
    agent-async  the updater's async path, `HttpArtifactSource.fetch` over
                 an httpx.AsyncClient (the simulator's nodes; the agent's
                 before 2026-12-07)
    httpx-sync   a floor in Python: httpx blocking, to a file, no event loop
    curl         the strictest floor: curl to a file

Variants alternate within each repetition, so load hits them alike. Each
variant runs twice per repetition, `--count` downloads and one: the
difference over `count - 1` is the CPU of one more download on a kept-alive
connection, without the child's start, imports or first handshake.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_download_client --repeats 5
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks._common import git_revision, machine, median, table

VARIANTS = ("agent", "agent-async", "httpx-sync", "curl")


@dataclass(frozen=True)
class Sample:
    variant: str
    cpu_ms: float  # one more download on a kept-alive connection
    load: float


def _write_tls_files(root: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1 signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.support.certs import self_signed

    ca_key, ca_cert = self_signed("bench download CA", dt.timedelta(hours=2), ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = root / "ca.pem", root / "server.pem", root / "server.key"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(paths[2], 0o600)
    return paths


def start_server(root: Path, size_mb: int) -> tuple[subprocess.Popen[bytes], int]:
    """nginx serving `root/www/archive` (random bytes) over TLS on a free port."""
    from tests.support.nginx import nginx_binary
    from tests.support.processes import free_port, wait_until

    ca, cert, key = _write_tls_files(root)
    del ca
    (root / "www").mkdir()
    (root / "www" / "archive").write_bytes(os.urandom(size_mb * 1024 * 1024))
    port = free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""
    temps = "".join(f"    {t}_temp_path {root / t};\n" for t in ("client_body", "proxy"))
    (root / "nginx.conf").write_text(
        f"{user}worker_processes 1;\npid {root / 'nginx.pid'};\n"
        f"error_log {root / 'error.log'};\nevents {{ worker_connections 64; }}\n"
        f"http {{\n    access_log off;\n{temps}"
        f"    server {{\n        listen 127.0.0.1:{port} ssl;\n"
        f"        ssl_certificate {cert};\n        ssl_certificate_key {key};\n"
        f"        keepalive_requests 100000;\n        root {root / 'www'};\n    }}\n}}\n"
    )
    args = [nginx_binary(), "-c", str(root / "nginx.conf"), "-p", str(root), "-g", "daemon off;"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def listening() -> bool:
        import socket

        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited {proc.returncode}: see {root / 'error.log'}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_until(listening, 10, "nginx listening")
    return proc, port


# -- the child: one client, `count` downloads ----------------------------------


def _child_agent(url: str, ca: Path, dest: Path, count: int, size: int, *, threaded: bool) -> None:
    import httpx

    from fogline.agent.updater import HttpArtifactSource, ThreadedHttpArtifactSource
    from fogline.agent.updater._ports import ArtifactSource
    from fogline.hubclient import resuming_client_context

    async def run() -> None:
        context = resuming_client_context(ca)
        async with httpx.AsyncClient(base_url=url, verify=context, timeout=60) as client:
            source: ArtifactSource = (
                ThreadedHttpArtifactSource(
                    lambda: httpx.Client(base_url=url, verify=context, timeout=60),
                    "/archive?{digest}",
                )
                if threaded
                else HttpArtifactSource(client, "/archive?{digest}")
            )
            for _ in range(count):
                sizes: list[int] = []
                await source.fetch("x", dest, offset=0, on_bytes=sizes.append)
                assert sizes[-1] == size, sizes[-1:]

    asyncio.run(run())


def _child_httpx_sync(url: str, ca: Path, dest: Path, count: int, size: int) -> None:
    import httpx

    from fogline.agent.updater._http import WRITE_BYTES
    from fogline.hubclient import resuming_client_context

    def run() -> None:
        context = resuming_client_context(ca)
        with httpx.Client(base_url=url, verify=context, timeout=60) as client:
            for _ in range(count):
                written = 0
                with client.stream("GET", "/archive") as response, open(dest, "wb") as out:
                    pending = bytearray()
                    for chunk in response.iter_raw():
                        pending += chunk
                        if len(pending) >= WRITE_BYTES:
                            written += out.write(pending)
                            pending.clear()
                    written += out.write(pending)
                assert written == size, written

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()


def _child(variant: str, url: str, ca: Path, dest: Path, count: int, size: int) -> None:
    if variant in ("agent", "agent-async"):
        _child_agent(url, ca, dest, count, size, threaded=variant == "agent")
    elif variant == "httpx-sync":
        _child_httpx_sync(url, ca, dest, count, size)
    else:
        raise SystemExit(f"unknown variant {variant!r}")


# -- the parent ----------------------------------------------------------------


def _child_cpu_s(argv: list[str]) -> float:
    """Run `argv` to completion; its CPU (user + system) from its rusage."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:4]} exited {proc.returncode}")
    return usage.ru_utime + usage.ru_stime


def _argv(variant: str, url: str, ca: Path, dest: Path, count: int, size: int) -> list[str]:
    if variant == "curl":
        curl = shutil.which("curl") or "curl"
        # One -o per URL: curl writes every URL after the last -o to stdout.
        each = [arg for _ in range(count) for arg in ("-o", str(dest), f"{url}/archive")]
        return [curl, "-sS", "--fail", "--cacert", str(ca), *each]
    return [
        sys.executable, "-m", "benchmarks.bench_download_client", "--child", variant,
        "--url", url, "--ca", str(ca), "--dest", str(dest), "--count", str(count),
        "--expect", str(size),
    ]  # fmt: skip


def bench(root: Path, size_mb: int, count: int, repeats: int) -> list[Sample]:
    """`repeats` rounds of every variant, alternated; CPU per download."""
    proc, port = start_server(root, size_mb)
    url, ca, size = f"https://127.0.0.1:{port}", root / "ca.pem", size_mb * 1024 * 1024
    samples: list[Sample] = []
    try:
        for _ in range(repeats):
            for variant in VARIANTS:
                dest = root / f"dest-{variant}"
                full = _child_cpu_s(_argv(variant, url, ca, dest, count, size))
                one = _child_cpu_s(_argv(variant, url, ca, dest, 1, size))
                cpu_ms = (full - one) * 1000 / (count - 1)
                samples.append(Sample(variant, cpu_ms, os.getloadavg()[0]))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return samples


def report(samples: list[Sample], size_mb: int, count: int) -> str:
    medians = {v: median([s.cpu_ms for s in samples if s.variant == v]) for v in VARIANTS}
    rows = [
        [
            variant,
            ", ".join(f"{s.cpu_ms:.1f}" for s in samples if s.variant == variant),
            f"**{medians[variant]:.1f}**",
            f"{medians[variant] / medians['curl']:.2f}x",
            ", ".join(f"{s.load:.1f}" for s in samples if s.variant == variant),
        ]
        for variant in VARIANTS
    ]
    head = ["client", f"CPU per {size_mb} MB download, each repetition (ms)", "median",
            "÷ curl", "load (1 min)"]  # fmt: skip
    return (
        f"{machine()}, git {git_revision()}, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{count} downloads per repetition on one connection\n\n" + table(head, rows)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=5)
    parser.add_argument("--count", type=int, default=20, help="downloads per repetition")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--ca", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--dest", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--expect", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.url, args.ca, args.dest, args.count, args.expect)
        return
    if not 2 <= args.count <= 1000 or not 1 <= args.repeats <= 50 or not 1 <= args.size_mb <= 512:
        parser.error("--count 2..1000, --repeats 1..50, --size-mb 1..512")
    with tempfile.TemporaryDirectory(prefix="bench-download-") as tmp:
        samples = bench(Path(tmp), args.size_mb, args.count, args.repeats)
    print(report(samples, args.size_mb, args.count))


if __name__ == "__main__":
    main()
