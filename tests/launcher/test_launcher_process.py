"""The real launcher process, with small stand-in agents in its slots.

Each stand-in is a `fogline` package whose `__main__` logs its start and
then behaves as told: confirm its trial the way the agent does (rewriting
the pointer atomically) and run, exit at once, or run and never confirm.
The real agent under the launcher is in tests/agent/test_selfupdate_e2e.py.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fogline.launcher import BUILTIN, Pointer, Slot, load_pointer, request_switch, save_pointer
from tests.support.processes import ENV, process_alive, wait_until

STAND_IN = textwrap.dedent("""\
    import json, os, pathlib, signal, sys, time

    slot = os.environ["FOGLINE_AGENT_SLOT"]
    mode = (pathlib.Path(__file__).resolve().parents[1] / "mode").read_text().strip()
    with open(os.environ["STAND_IN_LOG"], "a") as log:
        log.write(f"{slot} {os.getpid()}\\n")
    if mode == "exit":
        sys.exit(3)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    pointer = pathlib.Path(os.environ["FOGLINE_LAUNCHER_POINTER"])
    if mode == "good" and pointer.exists():
        doc = json.loads(pointer.read_text())
        if doc["trial"] is not None and doc["current"]["name"] == slot:
            doc["trial"] = None
            temp = pointer.with_name(".confirm.tmp")
            temp.write_text(json.dumps(doc))
            os.replace(temp, pointer)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.05)
    """)


def stand_in(root: Path, name: str, mode: str) -> Slot:
    path = root / "slots" / name
    (path / "fogline").mkdir(parents=True)
    (path / "fogline" / "__init__.py").write_text('__version__ = "9.0.0"\n')
    (path / "fogline" / "__main__.py").write_text(STAND_IN)
    (path / "mode").write_text(mode)
    return Slot(name, str(path), "9.0.0", "sha256:" + name[0] * 64)


class Node:
    def __init__(self, root: Path, deadline: str = "2s") -> None:
        self.root, self.deadline = root, deadline
        self.launcher_dir = root / "launcher"
        self.pointer_path = self.launcher_dir / "pointer.json"
        self.log = root / "starts.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**ENV, "STAND_IN_LOG": str(self.log)}
        args = [sys.executable, "-m", "fogline.launcher", "--root", str(self.launcher_dir)]
        args += ["--trial-deadline", self.deadline, "--", "version"]
        with open(self.root / "launcher.log", "ab") as out:
            self.proc = subprocess.Popen(args, env=env, stdout=out, stderr=out)

    def starts(self) -> list[tuple[str, int]]:
        if not self.log.exists():
            return []
        lines = self.log.read_text().splitlines()
        return [(name, int(pid)) for name, pid in (line.split() for line in lines)]

    def pointer(self) -> Pointer:
        return load_pointer(self.pointer_path, builtin_version="0.1.0")

    def wait_running(self, slot: str, count: int = 1) -> int:
        def started() -> int | None:
            assert self.proc is not None and self.proc.poll() is None, self.text()
            pids = [pid for name, pid in self.starts() if name == slot]
            return pids[-1] if len(pids) >= count and process_alive(pids[-1]) else None

        return int(wait_until(started, 20, f"{slot} running (start {count})"))

    def text(self) -> str:
        return (self.root / "launcher.log").read_text(errors="replace")[-3000:]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = Node(tmp_path)
    try:
        yield node
    finally:
        node.stop(signal.SIGKILL)


def switch(node: Node, running: Slot, new: Slot) -> None:
    """What the agent does: point at the new slot on trial, then exit."""
    pid = node.wait_running(running.name)
    request_switch(node.pointer_path, running, new, builtin_version="0.1.0")
    os.kill(pid, signal.SIGTERM)


def test_a_new_agent_that_confirms_is_kept_past_its_deadline(node: Node) -> None:
    old, new = stand_in(node.root, "old", "good"), stand_in(node.root, "new", "good")
    save_pointer(node.pointer_path, Pointer(old))
    node.start()
    switch(node, old, new)
    pid = node.wait_running("new")
    wait_until(lambda: node.pointer().trial is None, 10, "the trial confirmed")
    assert node.pointer() == Pointer(new, old)
    wait_until(lambda: "launcher.confirmed" in node.text(), 10, "the launcher saw it")
    # The property is about time: past the 2 s deadline, the same agent still runs.
    switched_at = time.monotonic()
    wait_until(lambda: time.monotonic() - switched_at > 2.5, 5, "the deadline passed")
    assert [s for s, _ in node.starts()] == ["old", "new"] and process_alive(pid)


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("exit", "exited with code 3 before its first report"), ("hang", "did not reconnect")],
)
def test_a_new_agent_that_fails_its_trial_is_replaced_by_the_previous_one(
    node: Node, mode: str, reason: str
) -> None:
    old, new = stand_in(node.root, "old", "good"), stand_in(node.root, "new", mode)
    save_pointer(node.pointer_path, Pointer(old))
    node.start()
    switch(node, old, new)
    node.wait_running("old", count=2)
    pointer = node.pointer()
    assert pointer.current == old and pointer.trial is None
    assert pointer.failed is not None and pointer.failed.slot == new
    assert reason in pointer.failed.reason
    hung = [pid for name, pid in node.starts() if name == "new"]
    assert hung and not process_alive(hung[0])  # the hung one was stopped


def test_a_trial_cut_by_a_restart_gets_one_more_start_then_is_reverted(node: Node) -> None:
    old, new = stand_in(node.root, "old", "good"), stand_in(node.root, "new", "hang")
    save_pointer(node.pointer_path, Pointer(old))
    node.deadline = "60s"  # only the restarts end this trial
    node.start()
    switch(node, old, new)
    first = node.wait_running("new")
    assert node.pointer().trial is not None and node.pointer().trial.starts == 1
    node.stop(signal.SIGKILL)  # the power cut: the launcher dies, its agent with it
    wait_until(lambda: not process_alive(first), 10, "the agent killed with its launcher")
    node.start()
    second = node.wait_running("new", count=2)
    assert second != first and node.pointer().trial.starts == 2
    node.stop(signal.SIGKILL)
    node.start()
    node.wait_running("old", count=2)
    pointer = node.pointer()
    assert pointer.current == old and pointer.failed is not None
    assert "restarted during its trial" in pointer.failed.reason


def test_a_missing_slot_or_an_unreadable_pointer_runs_the_builtin_agent(node: Node) -> None:
    gone = Slot("gone", str(node.root / "nowhere"), "9.0.0")
    save_pointer(node.pointer_path, Pointer(gone))
    node.start()
    wait_until(lambda: node.pointer().current.name == BUILTIN, 10, "back to builtin")
    assert "missing" in node.pointer().failed.reason  # type: ignore[union-attr]
    # The builtin agent here is `python -m fogline version`: it prints and exits.
    wait_until(lambda: "0.1.0" in node.text(), 10, "the builtin agent ran")
    node.stop()
    node.pointer_path.write_text("{torn")
    node.start()
    aside = node.pointer_path.with_suffix(".unreadable")
    wait_until(aside.exists, 10, "the unreadable pointer set aside")
    assert aside.read_text() == "{torn"  # kept as evidence
    wait_until(lambda: node.text().count("launcher.started") >= 2, 10, "the builtin agent again")


def test_the_cli_command_runs_the_agent_command_after_the_double_dash_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.log"
    args = [sys.executable, "-m", "fogline", "launcher", "run", "--root", str(tmp_path / "l")]
    with open(out, "ab") as sink:
        proc = subprocess.Popen([*args, "--", "version"], env=ENV, stdout=sink, stderr=sink)
    try:
        # `fogline version` is the builtin "agent" here: it prints and exits, and is restarted.
        wait_until(lambda: out.read_text().count("launcher.started") >= 2, 20, "two starts")
        assert "0.1.0" in out.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert "launcher.stopped" in out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
