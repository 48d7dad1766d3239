"""`make demo`: a hub and three edge agents on this machine, end to end.

Everything lives in a temporary directory and every process it starts is
stopped when the demo ends or on Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console

console = Console(stderr=True)
FOGLINE = [sys.executable, "-m", "fogline"]
AGENTS = [
    ("press-01", "line=press,zone=north"),
    ("press-02", "line=press,zone=south"),
    ("paint-01", "line=paint,zone=north"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Demo:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []
        self.port = free_port()
        self.hub_dir = root / "hub"
        self.env = {
            **os.environ,
            "FOGLINE_HUB": f"https://127.0.0.1:{self.port}",
            "FOGLINE_CA": str(self.hub_dir / "ca.pem"),
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "120",
        }

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen([*FOGLINE, *args], stdout=log, stderr=log, env=self.env)
        self.procs.append(proc)
        return proc

    def fogline(self, *args: str) -> str:
        return subprocess.run(
            [*FOGLINE, *args], env=self.env, check=True, text=True, capture_output=True
        ).stdout

    def wait_for(self, what: str, check, timeout_s: float = 30) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.2)
        raise SystemExit(f"demo: timed out waiting for {what}; logs in {self.root}")

    def hub_up(self) -> bool:
        try:
            ca = self.hub_dir / "ca.pem"
            return (
                ca.exists()
                and httpx.get(f"https://127.0.0.1:{self.port}/healthz", verify=str(ca)).status_code
                == 200
            )
        except httpx.HTTPError:
            return False

    def run(self) -> None:
        console.rule("[bold]Fogline demo")
        console.print(f"working directory: {self.root}")
        self.spawn(
            "hub",
            "hub",
            "serve",
            "--data-dir",
            str(self.hub_dir),
            "--port",
            str(self.port),
            "--report-interval",
            "2",
        )
        self.wait_for("the hub", self.hub_up)
        self.env["FOGLINE_TOKEN"] = (self.hub_dir / "admin-token").read_text().strip()
        console.print(f"[green]hub[/green] up at {self.env['FOGLINE_HUB']}")
        claim = self.fogline(
            "claim", "create", "--labels", "site=plant-7", "--max-uses", "3", "--expires", "1h"
        ).strip()
        console.print("claim token created for 3 devices (site=plant-7)")
        for name, labels in AGENTS:
            self.spawn(
                name,
                "agent",
                "run",
                "--hub",
                self.env["FOGLINE_HUB"],
                "--ca",
                self.env["FOGLINE_CA"],
                "--claim",
                claim,
                "--data-dir",
                str(self.root / name),
                "--name",
                name,
                "--labels",
                labels,
                "--local-port",
                "0",
            )
        self.wait_for(
            "three agents online",
            lambda: self.fogline("devices", "ls", "-o", "json").count('"online"') == 3,
        )
        console.print("[green]3 agents[/green] enrolled with their own keys (mTLS)\n")
        print(self.fogline("devices", "ls", "-o", "table"), flush=True)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        console.print(f"stopped {len(self.procs)} processes")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="fogline-demo-") as tmp:
        demo = Demo(Path(tmp))
        try:
            demo.run()
        except KeyboardInterrupt:
            console.print("interrupted")
        finally:
            demo.stop()


if __name__ == "__main__":
    main()
