"""README.md's "Quick start by hand" and the walk-through after it run as written.

The ```sh blocks of that section (the quick start, "A module and a pipeline
on the node", the retirement of the device) are fed, line by line, to one
bash in an empty directory, with `fogline` on PATH and no FOGLINE_*
variables set: what the blocks export is all the commands get. Before the
walk-through the test copies examples/ into the directory, as the README
tells the reader to. Lines ending in `&` (the hub, the agent) run in the
background, and the test waits until they are ready, as a person would;
every other command must exit 0 (or the code EXIT_CODES gives), the ones
listed in EXPECT must print what they promise, and those in EVENTUALLY are
run again until they do (a module starts and a pipeline's first summary
arrives within a minute). Editing the README into something that does not
run fails this test.

The quick start uses the default ports (hub 8443, agent's local endpoint
9271) and the example module listens on 9280: the test needs them free.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.processes import process_alive, wait_until

ROOT = Path(__file__).resolve().parent.parent
HUB_URL = "https://127.0.0.1:8443"
AGENT_HEALTH = "http://127.0.0.1:9271/healthz"
# Per block: commands (by how they start) and what their output must contain.
EXPECT = {
    "quick start": {
        "fogline devices ls": ["node1"],
        "fogline devices show node1": ["node1", "plant-7"],
        "fogline devices label node1": ["north"],
    },
    "walk-through": {
        "fogline release push": ["sha256:"],
        "fogline plan -f examples/fleet/": ["deployment/thermo", "modules[thermo-filter]"],
        "fogline apply -f examples/fleet/": ["rollout ro-", "claim/plant-7-line-b token"],
        "fogline devices desired node1": ["thermo-filter@1.0.0", "temperatures"],
    },
    "retirement": {"fogline devices revoke node1": ["revoked"]},
}
# Run again (bounded) until the output has these: they show what happens on the node.
EVENTUALLY = {
    "walk-through": {
        "fogline devices show node1": ["plant-7", "thermo-filter", "healthy"],
        "fogline logs node1 thermo-filter": ["thermo-filter 1.0.0 on 127.0.0.1:9280"],
        "fogline telemetry query --device node1 --stream temps-10s": ["temps-10s", "readings"],
        "fogline rollout status thermo": ["completed"],
    }
}
EXIT_CODES = {"fogline plan": 2}  # plan: 2 means changes pending
# Without these, it is not the quick start and walk-through any more.
REQUIRED = (
    "fogline hub serve",
    "fogline claim create",
    "fogline agent run",
    "fogline release build examples/thermo-filter",
    *(prefix for block in EXPECT.values() for prefix in block),
    *(prefix for block in EVENTUALLY.values() for prefix in block),
)
STEP_TIMEOUT_S = 60
EVENTUALLY_S = 120
PORTS = (8443, 9271, 9280)


def _sh_blocks(section: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def readme_sections(readme: str) -> list[list[str]]:
    """The commands of each ```sh block of '## Quick start by hand', up to the next section."""
    section = readme.split("## Quick start by hand", 1)[1].split("\n## ", 1)[0]
    section = section.split("### Log in once", 1)[0]  # a section of its own, with its own hub
    blocks = _sh_blocks(section)
    assert len(blocks) == 3, "README.md: the quick start, the walk-through, the retirement"
    return [_commands(block) for block in blocks]


def quickstart_commands(readme: str) -> list[str]:
    """Every command of the quick start and its walk-through, in order."""
    return [command for block in readme_sections(readme) for command in block]


def _commands(block: str) -> list[str]:
    commands, pending = [], ""
    for line in block.splitlines():
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
        if self.proc.stdin is not None:  # else an unclosed-file warning ends the run
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()


@pytest.fixture
def shell() -> Iterator[Shell]:
    for port in PORTS:
        assert _port_free(port), f"port {port} is taken: the README's quick start needs it"
    # Outside pytest's tmp: the quick start's paths are relative to it anyway.
    workdir = Path(tempfile.mkdtemp(prefix="fogline-quickstart-"))
    # As a home directory is: a root agent runs the module as nobody, who must
    # reach its install under ./node1 (the README says so).
    workdir.chmod(0o755)
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


def _run(shell: Shell, block: str, command: str, checked: set[tuple[str, str]]) -> None:
    expect, eventually = EXPECT.get(block, {}), EVENTUALLY.get(block, {})
    prefixes = [p for p in (*expect, *eventually) if command.startswith(p)]
    needles = [n for p in prefixes for n in {**expect, **eventually}[p]]
    deadline = time.monotonic() + (EVENTUALLY_S if any(p in eventually for p in prefixes) else 0)
    while True:
        code, out, err = shell.run(command)
        expected = next((c for p, c in EXIT_CODES.items() if command.startswith(p)), 0)
        assert code == expected, f"`{command}` exited {code}, not {expected}:\n{out}\n{err}"
        missing = [needle for needle in needles if needle not in out]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(2)  # a person would look again a little later
    assert not missing, f"`{command}` did not print {missing}:\n{out}\n{err}"
    checked.update((block, p) for p in prefixes)
    assigned = re.findall(r"(?:^|\s)([A-Z_][A-Z0-9_]*)=", command)
    for name in assigned:  # `export X=$(cmd)` exits 0 even when cmd fails
        assert shell.is_set(name), f"`{command}` left {name} empty:\n{err}"


@pytest.mark.timeout(420)
def test_the_readme_quick_start_runs_as_written(shell: Shell) -> None:
    quickstart, walkthrough, retirement = readme_sections((ROOT / "README.md").read_text())
    commands = [*quickstart, *walkthrough, *retirement]
    for required in REQUIRED:
        assert any(required in c for c in commands), f"the README lost `{required}`"
    checked: set[tuple[str, str]] = set()
    for command in quickstart:
        if command.endswith("&"):
            pid = shell.start(command)
            if command.startswith("fogline hub serve"):
                wait_until(lambda p=pid: _hub_ready(shell.cwd, p), 60, "the hub to serve")
            elif command.startswith("fogline agent run"):
                wait_until(lambda p=pid: _agent_enrolled(shell.cwd, p), 60, "the agent enrolled")
            else:
                pytest.fail(f"unexpected background command in the quick start: {command}")
            continue
        _run(shell, "quick start", command, checked)
    # "Copy the examples of your clone into the quick start's directory".
    shutil.copytree(ROOT / "examples", shell.cwd / "examples")
    for block, block_commands in (("walk-through", walkthrough), ("retirement", retirement)):
        for command in block_commands:
            assert not command.endswith("&"), command
            _run(shell, block, command, checked)
    wanted = {(block, p) for table in (EXPECT, EVENTUALLY) for block in table for p in table[block]}
    assert checked == wanted, wanted - checked
    # The claim never reached a command line that every user can read.
    claim = shell.run('printf %s "$FOGLINE_CLAIM"')[1]
    secret = claim.partition(".")[2] or claim
    for pid in shell.background:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        assert secret not in cmdline, cmdline
