"""Modules cannot read the device's private key: an agent running as root runs
them as `nobody` (by default), in a data dir of their own.

The end-to-end test needs the node's data dir on a path `nobody` can
traverse, so it lives in a 0711 dir under /tmp rather than pytest's 0700
tmp; its module is a /bin/sh script (this machine's Python is under /root,
out of nobody's reach: the runtime tests check that such a module fails
with an error naming the path and the flag).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import stat
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from fogline.agent.supervisor import (
    HealthCheck,
    ModuleStartError,
    ProcessRuntime,
    RunSpec,
    access_problem,
    resolve_module_user,
)
from tests.support.processes import AgentProcess, HubProcess, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="running modules as nobody needs root")

NOBODY = pwd.getpwnam("nobody")

SCRIPT = textwrap.dedent("""\
    out="$FOGLINE_DATA"
    id -u > "$out/uid"
    if cat "$KEY" > "$out/key-copy" 2> "$out/key-error"; then r=read; else r=refused; fi
    echo "$r" > "$out/key-result"
    : > "$out/readable"
    for f in $(echo "$PRIVATE" | tr ':' ' '); do
        if cat "$f" > /dev/null 2>&1; then echo "$f" >> "$out/readable"; fi
    done
    if touch ./planted 2> /dev/null; then r=yes; else r=no; fi
    echo "$r" > "$out/install-writable"
    cat "$FOGLINE_CONFIG" > "$out/config-copy"
    echo "$HOME" > "$out/home"
    echo done > "$out/done"
    exec sleep 1000
    """)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A dir `nobody` may pass through (pytest's tmp dirs are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="fogline-isolation-", dir="/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _release(hub: HubProcess, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    hub.cli(
        "apply", "-f", "-", input_text=hub.cli("keys", "create", "iso", "--dir", str(keys)).stdout
    )
    source = tmp_path / "probe"
    source.mkdir()
    (source / "run.sh").write_text(SCRIPT)
    (source / "fogline-module.yaml").write_text(
        textwrap.dedent("""\
        name: probe
        version: 1.0.0
        command: [/bin/sh, run.sh]
        health: {uptime: 500ms, interval: 200ms}
        startGrace: 2s
        architectures: [any]
        """)
    )
    archive = tmp_path / "probe.tar.zst"
    hub.cli("release", "build", str(source), "-o", str(archive))
    hub.cli("release", "sign", str(archive), "--key", str(keys / "iso.key"))
    hub.cli("release", "push", str(archive))


def _state(hub: HubProcess) -> str | None:
    modules = ((hub.device("isolated").get("reported") or {}).get("modules") or {}).get("modules")
    return ((modules or {}).get("probe") or {}).get("state")


def test_a_module_runs_as_nobody_and_cannot_read_the_device_key(
    hub: HubProcess, tmp_path: Path, open_dir: Path
) -> None:
    _release(hub, tmp_path)
    data = open_dir / "edge"
    # Left by an older agent under umask 0022 (an old module's log): must not stay readable.
    old_log = data / "logs" / "web" / "stdout.log"
    old_log.parent.mkdir(parents=True)
    for path in (data, data / "logs", old_log.parent):
        path.chmod(0o755)
    old_log.write_text("password=hunter2\n")
    old_log.chmod(0o644)
    private = [
        data / "identity" / "key.pem",
        data / "state" / "desired.json",  # every module's config and env
        data / "outbox.db",
        data / "config" / "config.json",
        data / "local-port",
        old_log,
    ]
    agent = AgentProcess(data, hub, "isolated", hub.create_claim(), module_user=None)
    agent.start()
    try:
        agent.wait_enrolled()
        manifest = tmp_path / "probe.yaml"
        manifest.write_text(
            textwrap.dedent(f"""\
            apiVersion: fogline.dev/v1
            kind: Deployment
            metadata: {{name: probe}}
            spec:
              selector: {{}}
              modules:
                - name: probe
                  release: probe@1.0.0
                  config: {{greeting: hi}}
                  env: {{KEY: "{data}/identity/key.pem", PRIVATE: "{":".join(map(str, private))}"}}
            """)
        )
        hub.cli("apply", "-f", str(manifest))
        own = data / "module-data" / "probe"
        wait_until(lambda: (own / "done").exists(), 60, f"the module to run ({agent.log_path})")

        assert (own / "uid").read_text().strip() == str(NOBODY.pw_uid)
        assert (own / "key-result").read_text().strip() == "refused"
        assert "Permission denied" in (own / "key-error").read_text()
        assert (own / "key-copy").read_bytes() == b""
        assert (own / "readable").read_text() == ""
        assert all(p.exists() for p in private)
        assert (own / "install-writable").read_text().strip() == "no"  # drift-checked files
        assert (own / "config-copy").read_text() == '{"greeting":"hi"}'  # its own config: yes
        assert (own / "home").read_text().strip() == str(own)
        written = (own / "done").stat()
        assert (written.st_uid, written.st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid)

        modes = {p: stat.S_IMODE(p.stat().st_mode) for p in (data, data / "identity", own)}
        assert modes == {data: 0o711, data / "identity": 0o700, own: 0o700}
        assert stat.S_IMODE((data / "identity" / "key.pem").stat().st_mode) == 0o600
        wait_until(lambda: _state(hub) == "healthy", 30, "the module reported healthy")
    finally:
        agent.stop()


# -- the runtime: what nobody cannot reach is named before the module starts ------


def _spec(workdir: Path, command: tuple[str, ...], **extra: object) -> RunSpec:
    return RunSpec(name="probe", version="1", workdir=workdir, command=command, **extra)  # type: ignore[arg-type]


def _start(spec: RunSpec, logs: Path) -> ModuleStartError:
    runtime = ProcessRuntime(user=resolve_module_user(None))  # root: nobody

    async def run() -> None:
        process = await runtime.start(spec, logs / "out.log", logs / "err.log")
        process.kill()
        await process.wait()

    with pytest.raises(ModuleStartError) as caught:
        asyncio.run(run())
    return caught.value


def test_a_python_under_a_closed_dir_fails_with_the_path_and_the_flag(
    open_dir: Path, tmp_path: Path
) -> None:
    closed = open_dir / "closed"
    closed.mkdir(mode=0o700)
    python = closed / "python3"
    python.symlink_to(sys.executable)  # like a venv's bin/python
    work = open_dir / "work"
    work.mkdir(mode=0o755)
    error = _start(_spec(work, (str(python), "-c", "pass")), tmp_path)
    assert f"{closed} is drwx------ root:root" in str(error)
    assert "module user 'nobody' cannot run" in str(error)
    assert "--module-user USER" in str(error)


def test_this_machines_python_is_checked_through_its_symlinks(open_dir: Path) -> None:
    real = Path(os.path.realpath(sys.executable))
    blocked = next(
        (p for p in reversed(real.parents) if not os.stat(p).st_mode & stat.S_IXOTH), None
    )
    if blocked is None:
        pytest.skip(f"{real} is reachable by nobody on this machine")
    problem = access_problem(
        resolve_module_user("nobody"),
        command=sys.executable,
        workdir=open_dir,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert problem is not None and str(blocked) in problem


def test_a_command_on_path_and_a_scripts_interpreter_are_checked(open_dir: Path) -> None:
    nobody = resolve_module_user("nobody")
    closed = open_dir / "closed"
    closed.mkdir(mode=0o700)
    tool = closed / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    problem = access_problem(
        nobody, command="tool", workdir=open_dir, env={"PATH": f"{closed}:/usr/bin"}
    )
    assert problem is not None and f"cannot run {tool}" in problem and str(closed) in problem

    script = open_dir / "run"
    script.write_text(f"#!{closed}/interp\n")
    script.chmod(0o755)
    (closed / "interp").write_text("")
    (closed / "interp").chmod(0o755)
    problem = access_problem(nobody, command="./run", workdir=open_dir, env={})
    assert problem is not None and str(closed) in problem

    assert (
        access_problem(nobody, command="sh", workdir=open_dir, env={"PATH": "/usr/bin:/bin"})
        is None
    )


def test_a_data_dir_below_a_closed_dir_is_named(open_dir: Path, tmp_path: Path) -> None:
    work = open_dir / "work"
    work.mkdir(mode=0o755)
    closed = open_dir / "closed"
    closed.mkdir(mode=0o700)
    error = _start(
        _spec(work, ("/bin/sh", "-c", "true"), data_dir=closed / "data" / "probe"), tmp_path
    )
    assert f"cannot reach {closed / 'data' / 'probe'}" in str(error) and str(closed) in str(error)


def test_health_commands_run_as_the_module_user_too(open_dir: Path, tmp_path: Path) -> None:
    runtime = ProcessRuntime(user=resolve_module_user("nobody"))
    spec = _spec(open_dir, ("/bin/sh", "-c", "exec sleep 30"))
    check = HealthCheck(
        kind="command", target=("/bin/sh", "-c", f"test $(id -u) = {NOBODY.pw_uid}")
    )

    async def run() -> bool:
        process = await runtime.start(spec, tmp_path / "out.log", tmp_path / "err.log")
        try:
            uid = Path(f"/proc/{process.pid}/status").read_text().split("Uid:")[1].split()[0]
            assert uid == str(NOBODY.pw_uid)
            return (await runtime.probe(process, spec, check, 0.0)).healthy
        finally:
            process.kill()
            await process.wait()

    assert asyncio.run(run())


def test_the_agent_refuses_an_unknown_module_user(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such user"):
        resolve_module_user("no-such-user-here")
    assert resolve_module_user(None).name == "nobody"  # root's default
    assert resolve_module_user("0").is_agent_user
