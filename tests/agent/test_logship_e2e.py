"""A module removed from the deployment, against a real hub and a real agent:
its goodbye reaches the hub, the agent lets its log files go, and when the
module is deployed again nothing is shipped twice."""

import os
import re
import textwrap
from pathlib import Path

import pytest

from tests.support.processes import AgentProcess, HubProcess, wait_until

MODULE = textwrap.dedent("""\
    import os, signal, sys, time
    print(f"bye {os.getpid()} up", flush=True)
    def stop(*_):
        print(f"bye {os.getpid()} stopping", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    while True:
        time.sleep(1)
    """)

DEPLOYMENT = textwrap.dedent("""\
    apiVersion: fogline.dev/v1
    kind: Deployment
    metadata: {name: bye}
    spec:
      selector: {}
      modules:
        - name: bye
          release: bye@VERSION
    """)


def _release(hub: HubProcess, tmp_path: Path, keys: Path, version: str) -> None:
    source = tmp_path / f"bye-{version}"
    source.mkdir()
    (source / "main.py").write_text(MODULE)
    (source / "fogline-module.yaml").write_text(
        textwrap.dedent(f"""\
        name: bye
        version: {version}
        command: [python3, main.py]
        health: {{uptime: 1s}}
        startGrace: 1s
        stopGrace: 5s
        restart: {{policy: always, backoff: {{initial: 200ms, max: 2s}}}}
        architectures: [any]
        """)
    )
    archive = tmp_path / f"bye-{version}.tar.zst"
    hub.cli("release", "build", str(source), "-o", str(archive))
    hub.cli("release", "sign", str(archive), "--key", str(keys / "ci.key"))
    hub.cli("release", "push", str(archive))


def _open_logs(agent: AgentProcess) -> list[str]:
    """The files under the module's log directory the agent process holds open."""
    assert agent.proc is not None
    directory = f"{agent.data_dir / 'logs' / 'bye'}/"
    held = []
    for fd in os.listdir(f"/proc/{agent.proc.pid}/fd"):
        try:
            target = os.readlink(f"/proc/{agent.proc.pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith(directory):
            held.append(target)
    return held


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_removed_module_says_goodbye_is_let_go_and_is_not_shipped_twice_when_back(
    hub: HubProcess, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    created = hub.cli("keys", "create", "ci", "--dir", str(keys))
    hub.cli("apply", "-f", "-", input_text=created.stdout)
    for version in ("1.0.0", "2.0.0"):
        _release(hub, tmp_path, keys, version)
    agent = AgentProcess(tmp_path / "node", hub, "bye-1", hub.create_claim())
    agent.start()
    try:
        agent.wait_enrolled()

        def shipped() -> str:
            return str(hub.cli("logs", "bye-1", "bye").stdout)

        def pids(out: str, word: str) -> list[str]:
            return re.findall(rf"bye (\d+) {word}", out)

        hub.cli("apply", "-f", "-", input_text=DEPLOYMENT.replace("VERSION", "1.0.0"))
        first = wait_until(lambda: pids(shipped(), "up"), 60, "the module's first line")[0]
        wait_until(lambda: _open_logs(agent), 10, "the agent following the module's log")

        hub.cli("delete", "deployment", "bye")
        wait_until(lambda: pids(shipped(), "stopping") == [first], 30, "the goodbye at the hub")
        wait_until(lambda: _open_logs(agent) == [], 15, "the agent letting the log files go")

        # Back as 2.0.0: the same 1.0.0 again is found installed and is not
        # started at all (a bug of the module manager, not of log shipping).
        hub.cli("apply", "-f", "-", input_text=DEPLOYMENT.replace("VERSION", "2.0.0"))
        second = wait_until(
            lambda: (found := pids(shipped(), "up")) and len(found) >= 2 and found[1], 60, "again"
        )
        assert second != first
        wait_until(lambda: _open_logs(agent), 10, "the agent following the log again")
        out = shipped()
        assert pids(out, "up") == [first, second]  # the first run's lines once, not again
        assert pids(out, "stopping") == [first]
    finally:
        agent.stop()
