"""README.md's "Quick start by hand" runs as written.

The ```sh block under that heading is fed, line by line, to one bash in an
empty directory, with `fogline` on PATH and no FOGLINE_* variables set:
what the block exports is all the commands get. Lines ending in `&` (the
hub, the agent) run in the background, and the test waits until they are
ready, as a person would; every other command must exit 0, and the ones
listed in EXPECT must print what they promise. Editing the README into
something that does not run fails this test.

The quick start uses the default ports (hub 8443, agent's local endpoint
9271): the test needs them free.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.processes import process_alive, wait_until

ROOT = Path(__file__).resolve().parent.parent
HUB_URL = "https://127.0.0.1:8443"
AGENT_HEALTH = "http://127.0.0.1:9271/healthz"
# Commands (by how they start) and what their output must contain.
EXPECT = {
    "fogline devices ls": ["node1"],
    "fogline devices show node1": ["node1", "plant-7"],
    "fogline devices label node1": ["north"],
    "fogline devices revoke node1": ["revoked"],
}
# Without these, it is not the quick start any more.
REQUIRED = ("fogline hub serve", "fogline claim create", "fogline agent run", *EXPECT)
STEP_TIMEOUT_S = 60


def quickstart_commands(readme: str) -> list[str]:
    """The commands of the first ```sh block under '## Quick start by hand'."""
    section = readme.split("## Quick start by hand", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "README.md: no ```sh block under '## Quick start by hand'"
    commands, pending = [], ""
    for line in match.group(1).splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.strip() and not line.lstrip().startswith("#"):
            commands.append(line.strip())
    return commands


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


class Shell:
    """One bash, fed one command at a time; each command's output and status go to files."""

    def __init__(self, cwd: Path) -> None:
        self.cwd, self.state = cwd, cwd / ".quickstart"
        self.state.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FOGLINE_")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["COLUMNS"] = "200"
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            text=True,
            # Its own process group: whatever the block starts, even a command
            # that blocks in the foreground, is stopped with the group.
            start_new_session=True,
        )
        self.background: list[int] = []
        self.count = 0

    def _send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def run(self, command: str) -> tuple[int, str, str]:
        """Run `command` in the shell (its variables stay); exit code, stdout, stderr."""
        self.count += 1
        out, err, rc = (self.state / f"{kind}.{self.count}" for kind in ("out", "err", "rc"))
        self._send(f"{{ {command}\n}} > {out} 2> {err}; echo $? > {rc}.tmp; mv {rc}.tmp {rc}")
        wait_until(rc.exists, STEP_TIMEOUT_S, f"`{command}` to finish")
        return int(rc.read_text()), out.read_text(), err.read_text()

    def start(self, command: str) -> int:
        """Run a `... &` line; returns the pid of what it started."""
        self.count += 1
        pid_file = self.state / f"pid.{self.count}"
        self._send(f"{command}\necho $! > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}")
        wait_until(pid_file.exists, 10, f"`{command}` to start")
        pid = int(pid_file.read_text())
        self.background.append(pid)
        return pid

    def is_set(self, name: str) -> bool:
        return self.run(f'test -n "${{{name}}}"')[0] == 0

    def close(self) -> None:
        for pid in self.background:  # only what this shell started, by pid
            if process_alive(pid):
                os.kill(pid, signal.SIGTERM)
        for pid in self.background:
            try:
                wait_until(lambda pid=pid: not process_alive(pid), 15, f"pid {pid} to stop")
            except AssertionError:
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group this test created
        self.proc.wait(10)


@pytest.fixture
def shell() -> Iterator[Shell]:
    for port in (8443, 9271):
        assert _port_free(port), f"port {port} is taken: the README's quick start needs it"
    # Outside pytest's tmp: the quick start's paths are relative to it anyway.
    workdir = Path(tempfile.mkdtemp(prefix="fogline-quickstart-"))
    started = Shell(workdir)
    try:
        yield started
    finally:
        started.close()
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


def _hub_ready(cwd: Path, pid: int) -> bool:
    assert process_alive(pid), (cwd / "hub.log").read_text(errors="replace")[-3000:]
    ca = cwd / "hub" / "ca.pem"
    if not ca.exists() or not (cwd / "hub" / "admin-token").exists():
        return False
    try:
        context = ssl.create_default_context(cafile=str(ca))
        return httpx.get(f"{HUB_URL}/healthz", verify=context, timeout=2).status_code == 200
    except (httpx.HTTPError, ssl.SSLError):
        return False


def _agent_enrolled(cwd: Path, pid: int) -> bool:
    assert process_alive(pid), (cwd / "node1.log").read_text(errors="replace")[-3000:]
    try:
        return bool(httpx.get(AGENT_HEALTH, timeout=2).json().get("enrolled"))
    except (httpx.HTTPError, ValueError):
        return False


def test_the_readme_quick_start_runs_as_written(shell: Shell) -> None:
    commands = quickstart_commands((ROOT / "README.md").read_text())
    for required in REQUIRED:
        assert any(required in c for c in commands), f"quick start lost `{required}`"
    checked = set()
    for command in commands:
        if command.endswith("&"):
            pid = shell.start(command)
            if command.startswith("fogline hub serve"):
                wait_until(lambda p=pid: _hub_ready(shell.cwd, p), 60, "the hub to serve")
            elif command.startswith("fogline agent run"):
                wait_until(lambda p=pid: _agent_enrolled(shell.cwd, p), 60, "the agent enrolled")
            else:
                pytest.fail(f"unexpected background command in the quick start: {command}")
            continue
        code, out, err = shell.run(command)
        assert code == 0, f"`{command}` exited {code}:\n{out}\n{err}"
        assigned = re.findall(r"(?:^|\s)([A-Z_][A-Z0-9_]*)=", command)
        for name in assigned:  # `export X=$(cmd)` exits 0 even when cmd fails
            assert shell.is_set(name), f"`{command}` left {name} empty:\n{err}"
        for prefix, needles in EXPECT.items():
            if command.startswith(prefix):
                checked.add(prefix)
                for needle in needles:
                    assert needle in out, f"`{command}` did not print {needle!r}:\n{out}\n{err}"
    assert checked == set(EXPECT)
    # The claim never reached a command line that every user can read.
    claim = shell.run('printf %s "$FOGLINE_CLAIM"')[1]
    secret = claim.partition(".")[2] or claim
    for pid in shell.background:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        assert secret not in cmdline, cmdline
