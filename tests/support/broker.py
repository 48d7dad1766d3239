"""A real Mosquitto broker on 127.0.0.1 for tests, started as a child process."""

from __future__ import annotations

import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from .processes import free_port, wait_until


def mosquitto_binary() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail("mosquitto is missing: run scripts/setup-system.sh")


@dataclass
class Broker:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_broker(
    directory: Path, port: int | None = None, *, settings: str | None = None
) -> Broker:
    """Mosquitto on `port` (default: a free one), its config and log in `directory`.

    `settings` replaces the anonymous defaults: lines of mosquitto.conf that
    follow the `listener` line (TLS files, password_file, ...).
    """
    port = port or free_port()
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "mosquitto.conf"
    if settings is None:
        settings = "allow_anonymous true\n"
    conf.write_text(
        f"listener {port} 127.0.0.1\n{settings}persistence false\nmax_queued_messages 100000\n"
    )
    log_path = directory / "mosquitto.log"
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=log, stderr=log)
    broker = Broker(port, proc)

    def listening() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"mosquitto exited: {log_path.read_text()}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_until(listening, 10, f"mosquitto listening on {port}")
    except AssertionError:
        broker.stop()
        raise
    return broker
