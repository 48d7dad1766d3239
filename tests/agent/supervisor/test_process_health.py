"""Health checks against real module processes: http, tcp, command, uptime."""

import datetime as dt
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from fogline.agent.supervisor import HealthCheck, ProcessRuntime, Supervisor
from fogline.agent.supervisor._health import _NO_VERIFY
from tests.support.certs import self_signed
from tests.support.processes import free_port, wait_until_async

from ._support import async_test, is_alive, python_module, status_where, supervising

HTTP_MODULE = """
import http.server, os, sys

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/healthz" and not os.path.exists("unhealthy")
        self.send_response(200 if ok else 503)
        self.end_headers()
        self.wfile.write(b"ok" if ok else b"sick")

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""

TCP_MODULE = """
import socket, sys, time
time.sleep(0.2)  # not listening at first: probes fail within the start grace
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    connection, _ = server.accept()
    connection.close()
"""


HTTPS_MODULE = """
import http.server, ssl, sys

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain("cert.pem", "key.pem")
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def _self_signed(directory: Path) -> None:
    """cert.pem and key.pem in `directory`: a certificate for another name, signed by itself."""
    key, cert = self_signed("module.invalid", dt.timedelta(hours=1))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def supervisor(tmp_path: Path) -> Supervisor:
    return Supervisor(ProcessRuntime(), tmp_path / "logs", min_stable_s=0.5)


@async_test
async def test_http_health_follows_the_endpoint(tmp_path: Path) -> None:
    port = free_port()
    check = HealthCheck("http", f"http://127.0.0.1:{port}/healthz", timeout_s=1.0, interval_s=0.05)
    spec = python_module(
        tmp_path / "w", HTTP_MODULE, args=(str(port),), health=check, start_grace_s=1.0
    )
    sup = supervisor(tmp_path)
    async with supervising(sup):
        await sup.apply({"mod": spec})
        assert await sup.wait_healthy("mod", 10.0)
        (tmp_path / "w" / "unhealthy").touch()
        sick = await status_where(sup, "mod", lambda s: s.state == "unhealthy", "unhealthy")
        assert sick.last_error == f"unhealthy: GET http://127.0.0.1:{port}/healthz: HTTP 503"
        (tmp_path / "w" / "unhealthy").unlink()
        await status_where(sup, "mod", lambda s: s.state == "healthy", "healthy again")
        assert sup.statuses()["mod"].restarts == 0


@async_test
async def test_https_health_accepts_a_module_s_self_signed_certificate(tmp_path: Path) -> None:
    # A liveness probe: the module answers, whoever it says it is. The probe's
    # context holds no CA (the system's store is about 1 MB an agent would keep).
    assert _NO_VERIFY.cert_store_stats()["x509"] == 0
    _self_signed(tmp_path / "w")
    port = free_port()
    check = HealthCheck("http", f"https://127.0.0.1:{port}/healthz", timeout_s=2.0, interval_s=0.05)
    spec = python_module(
        tmp_path / "w", HTTPS_MODULE, args=(str(port),), health=check, start_grace_s=2.0
    )
    sup = supervisor(tmp_path)
    async with supervising(sup):
        await sup.apply({"mod": spec})
        assert await sup.wait_healthy("mod", 10.0)


@async_test
async def test_tcp_health_waits_for_the_port(tmp_path: Path) -> None:
    port = free_port()
    check = HealthCheck("tcp", port, timeout_s=0.5, interval_s=0.05)
    spec = python_module(
        tmp_path / "w", TCP_MODULE, args=(str(port),), health=check, start_grace_s=1.0
    )
    sup = supervisor(tmp_path)
    async with supervising(sup):
        await sup.apply({"mod": spec})
        assert sup.statuses()["mod"].state == "starting"
        assert await sup.wait_healthy("mod", 10.0)


@async_test
async def test_tcp_health_fails_after_the_grace_when_nothing_listens(tmp_path: Path) -> None:
    port = free_port()
    check = HealthCheck("tcp", port, timeout_s=0.5, interval_s=0.05)
    spec = python_module(
        tmp_path / "w", "import time; time.sleep(60)", health=check, start_grace_s=0.2
    )
    sup = supervisor(tmp_path)
    async with supervising(sup):
        await sup.apply({"mod": spec})
        assert not await sup.wait_healthy("mod", 0.1)
        sick = await status_where(sup, "mod", lambda s: s.state == "unhealthy", "unhealthy")
        assert sick.last_error is not None and f"tcp 127.0.0.1:{port}" in sick.last_error


@async_test
async def test_command_health_runs_in_the_module_dir(tmp_path: Path) -> None:
    module = "import pathlib, time; time.sleep(0.3); pathlib.Path('ready').touch(); time.sleep(60)"
    probe = (sys.executable, "-c", "import os, sys; sys.exit(0 if os.path.exists('ready') else 1)")
    check = HealthCheck("command", probe, timeout_s=2.0, interval_s=0.05)
    spec = python_module(tmp_path / "w", module, health=check, start_grace_s=1.0)
    sup = supervisor(tmp_path)
    async with supervising(sup):
        await sup.apply({"mod": spec})
        assert sup.statuses()["mod"].state == "starting"
        assert await sup.wait_healthy("mod", 10.0)


@async_test
async def test_a_hung_health_command_is_bounded_and_killed(tmp_path: Path) -> None:
    hang = (
        sys.executable,
        "-c",
        "import os, time; open('probe.pids', 'a').write(f'{os.getpid()}\\n'); time.sleep(60)",
    )
    check = HealthCheck("command", hang, timeout_s=0.3, interval_s=0.05)
    spec = python_module(
        tmp_path / "w", "import time; time.sleep(60)", health=check, start_grace_s=0.0
    )
    sup = supervisor(tmp_path)
    async with supervising(sup):
        await sup.apply({"mod": spec})
        sick = await status_where(sup, "mod", lambda s: s.state == "unhealthy", "unhealthy")
        assert sick.last_error is not None and "timed out after 0.3s" in sick.last_error
    pids = [int(line) for line in (tmp_path / "w" / "probe.pids").read_text().split()]
    assert pids
    await wait_until_async(lambda: not any(is_alive(pid) for pid in pids), 3, "probes gone", 0.02)


@async_test
async def test_uptime_health_needs_the_process_to_stay_up(tmp_path: Path) -> None:
    check = HealthCheck("uptime", 0.4, timeout_s=1.0, interval_s=0.05)
    spec = python_module(
        tmp_path / "w", "import time; time.sleep(60)", health=check, start_grace_s=0.2
    )
    sup = supervisor(tmp_path)
    async with supervising(sup):
        started = time.monotonic()
        await sup.apply({"mod": spec})
        assert await sup.wait_healthy("mod", 5.0)
        assert time.monotonic() - started >= 0.4
