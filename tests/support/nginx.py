"""A real nginx on 127.0.0.1 serving a hub's artifacts for `--artifact-offload`,
started as a child process with the server block `fogline hub nginx-config`
prints (the real command), wrapped in a main config of its own: pid, logs
and temporary files in the test's directory, no daemon."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from .processes import ENV, RUNNING, fogline_cmd, free_port, wait_until

_TEMPS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_binary() -> str:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail("nginx is missing: run scripts/setup-system.sh")


@dataclass
class Nginx:
    port: int
    prefix: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.prefix / "access.log"

    def access_lines(self) -> list[str]:
        return self.access_log.read_text().splitlines() if self.access_log.exists() else []

    def served(self, path: str) -> list[tuple[int, int]]:
        """(status, body bytes) of every logged GET of `path` (query ignored)."""
        pattern = re.compile(r'"GET ' + re.escape(path) + r'(?:\?\S*)? HTTP/[0-9.]+" (\d+) (\d+)')
        return [
            (int(m.group(1)), int(m.group(2)))
            for line in self.access_lines()
            if (m := pattern.search(line))
        ]

    def stop(self, sig: int = 15) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        RUNNING.pop(id(self), None)


def server_block(data_dir: Path, port: int) -> str:
    """What `fogline hub nginx-config` prints for this hub and port."""
    options = ["--listen", f"127.0.0.1:{port}", "--server-name", "127.0.0.1"]
    result = subprocess.run(
        [*fogline_cmd(), "hub", "nginx-config", "--data-dir", str(data_dir), *options],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def start_nginx(
    data_dir: Path, prefix: Path, port: int | None = None, *, workers: int = 1
) -> Nginx:
    """nginx serving the hub in `data_dir`'s artifacts on `port` (default: a
    free one) with `workers` worker processes; config, pid, logs and
    temporary files under `prefix`."""
    port = port or free_port()
    prefix.mkdir(parents=True, exist_ok=True)
    temps = "".join(f"    {t}_temp_path {prefix / t};\n" for t in _TEMPS)
    # As root, nginx's workers would run as nobody, who cannot enter the
    # tests' 0700 directories: run them as us, as the hub's user would.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"{user}worker_processes {workers};\nworker_rlimit_nofile 20000;\n"
        f"pid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} info;\n"
        "events { worker_connections 20000; }\n"
        "http {\n"
        f"    access_log {prefix / 'access.log'};\n{temps}"
        f"{server_block(data_dir, port)}"
        "}\n"
    )
    args = [nginx_binary(), "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "error.log")]
    with open(prefix / "stderr.log", "ab") as log:
        proc = subprocess.Popen([*args, "-g", "daemon off;"], stdout=log, stderr=log)
    nginx = Nginx(port, prefix, proc)
    RUNNING[id(nginx)] = nginx

    def listening() -> bool:
        if proc.poll() is not None:
            raise AssertionError(
                f"nginx exited {proc.returncode}: {(prefix / 'stderr.log').read_text()}"
                f"{(prefix / 'error.log').read_text() if (prefix / 'error.log').exists() else ''}"
            )
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_until(listening, 10, f"nginx listening on {port}")
    except AssertionError:
        nginx.stop()
        raise
    return nginx
