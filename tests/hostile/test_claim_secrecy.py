"""The claim never sits on a command line, where every user of the machine reads it.

`fogline agent run` takes it from FOGLINE_CLAIM or from --claim-file (a file
only its owner may read); `--claim TOKEN` is gone.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from fogline.security import TokenFileError, read_token_file
from tests.support.processes import ENV, AgentProcess, HubProcess, fogline_cmd, wait_until


def _agent_run(tmp_path: Path, ca: Path, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [
            *fogline_cmd(), "agent", "run", "--hub", "https://127.0.0.1:1", "--ca", str(ca),
            "--data-dir", str(tmp_path / "node"), "--local-port", "0", *args,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={**ENV, **(env or {})},
    )  # fmt: skip


def test_the_claim_option_is_gone(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("unused")
    result = _agent_run(tmp_path, tmp_path / "ca.pem", "--claim", "fgc_abc.secret")
    assert result.returncode == 2
    assert "No such option" in result.stderr and "--claim" in result.stderr


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_claim_file_others_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    (tmp_path / "ca.pem").write_text("unused")
    claim = tmp_path / "claim"
    claim.write_text("fgc_abc.secret\n")
    claim.chmod(mode)
    result = _agent_run(tmp_path, tmp_path / "ca.pem", "--claim-file", str(claim))
    assert result.returncode == 1, result.stderr
    assert f"{claim}: mode {mode:04o}" in result.stderr and "chmod 600" in result.stderr
    assert "secret" not in result.stderr


def test_a_claim_in_both_places_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("unused")
    claim = tmp_path / "claim"
    claim.write_text("fgc_abc.secret")
    claim.chmod(0o600)
    result = _agent_run(
        tmp_path,
        tmp_path / "ca.pem",
        "--claim-file",
        str(claim),
        env={"FOGLINE_CLAIM": "fgc_abc.secret"},
    )
    assert result.returncode == 2 and "not both" in result.stderr


def test_an_agent_enrolls_with_a_claim_file_kept_off_its_command_line(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    token = shared_hub.create_claim()
    claim = tmp_path / "claim"
    claim.write_text(token + "\n")
    claim.chmod(0o600)
    agent = AgentProcess(
        tmp_path / "node", shared_hub, "from-file", None, extra_args=["--claim-file", str(claim)]
    )
    agent.start()
    try:
        agent.wait_enrolled()
        assert agent.proc is not None
        cmdline = Path(f"/proc/{agent.proc.pid}/cmdline").read_bytes().decode()
        assert token not in cmdline and token.partition(".")[2] not in cmdline
        # Read only to enroll: once enrolled the node restarts without it.
        agent.stop()
        claim.unlink()
        agent.start()
        wait_until(lambda: (agent.health() or {}).get("enrolled"), 30, "restart")
        assert agent.proc.poll() is None
    finally:
        agent.stop()


def test_an_agent_enrolls_with_the_claim_from_its_environment(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    token = shared_hub.create_claim()
    agent = AgentProcess(tmp_path / "node", shared_hub, "from-env", token)  # FOGLINE_CLAIM
    agent.start()
    try:
        agent.wait_enrolled()
        assert agent.proc is not None
        assert token not in Path(f"/proc/{agent.proc.pid}/cmdline").read_bytes().decode()
    finally:
        agent.stop()


@pytest.mark.parametrize(
    ("content", "mode", "reason"),
    [
        ("fgc_a.b\n", 0o600, None),
        ("fgc_a.b", 0o400, None),
        ("fgc_a.b", 0o644, "mode 0644"),
        ("fgc_a.b", 0o620, "mode 0620"),
        ("  \n", 0o600, "empty"),
        ("x" * 5000, 0o600, "larger than"),
    ],
)
def test_token_files_are_read_only_when_private(
    tmp_path: Path, content: str, mode: int, reason: str | None
) -> None:
    path = tmp_path / "token"
    path.write_text(content)
    path.chmod(mode)
    if reason is None:
        assert read_token_file(path) == content.strip()
    else:
        with pytest.raises(TokenFileError, match=reason):
            read_token_file(path)


def test_a_token_file_must_be_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError, match="not a regular file"):
        read_token_file(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(TokenFileError, match="not a regular file"):
        read_token_file(fifo)
    with pytest.raises(TokenFileError, match="cannot open"):
        read_token_file(tmp_path / "missing")
