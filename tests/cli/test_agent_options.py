"""`fogline agent run` checks before its exec what the standard library can
(Typer's usage errors), and its exec'd program (`cli._agent_main`) checks the
rest: labels, the module user, the MQTT URL and files. Importing the agent's
package before the exec cost about 0.45 s of CPU at every start (BENCHMARKS.md,
"Agent idle RSS"). Either way a bad option is a usage error (exit 2) naming
the flag and the reason, without a traceback, before the node's data
directory is touched."""

import re
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import ENV, fogline_cmd

_IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", re.MULTILINE)
_HEADER = "import time: self [us] | cumulative | imported package"


def _agent_run(tmp_path: Path, *args: str, env: dict[str, str] | None = None):
    ca = tmp_path / "ca.pem"
    ca.write_text("unused")  # read by the agent only once it runs
    return subprocess.run(
        [
            *fogline_cmd(), "agent", "run", "--hub", "https://127.0.0.1:1", "--ca", str(ca),
            "--data-dir", str(tmp_path / "node"), "--local-port", "0", *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**ENV, "COLUMNS": "200", **(env or {})},
        cwd=tmp_path,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--labels", "no-equals"], "Invalid value for --labels: label 'no-equals' must look like"),
        (["--labels", "fogline.dev/os=x"], "keys under fogline.dev/ belong to the hub"),
        (["--module-user", "no-such-user-x"], "Invalid value for --module-user: no such user"),
        (["--mqtt", "ftp://127.0.0.1"], "Invalid value for --mqtt: "),
    ],
)
def test_the_exec_d_program_refuses_a_bad_option_as_a_usage_error(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    result = _agent_run(tmp_path, *args, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 2, result.stderr[-2000:]
    runs = result.stderr.split(_HEADER)
    assert len(runs) == 3, result.stderr[-2000:]  # `agent run` exec'd its program, which refused
    before_exec = set(_IMPORTED.findall(runs[1]))
    assert "fogline.cli._agent_main" in before_exec  # the probe sees the first interpreter's
    assert (
        sorted(m for m in before_exec if m.startswith(("fogline.agent", "fogline.protocol"))) == []
    )
    message = runs[2]
    assert expected in message, message[-2000:]
    assert "Usage: fogline agent run [OPTIONS]" in message
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "node").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--mqtt-username", "agent"], "the MQTT options need --mqtt URL"),
        (["--mqtt", "mqtt://127.0.0.1:1", "--mqtt-protocol", "4"], "must be 3.1.1 or 5"),
        (
            ["--mqtt", "mqtt://127.0.0.1:1", "--mqtt-password-file", "pw"],
            "--mqtt-password-file: needs --mqtt-username",
        ),
        (["--outbox-max-mb", "0"], "--outbox-max-mb"),
    ],
)
def test_what_the_standard_library_can_check_is_typer_s_usage_error_before_the_exec(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    result = _agent_run(tmp_path, *args, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(result.stderr.split(_HEADER)) == 2  # no exec
    assert expected in result.stderr and "╭─ Error" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "node").exists()


def test_a_missing_ca_file_is_refused_before_the_exec(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            *fogline_cmd(), "agent", "run", "--hub", "https://127.0.0.1:1",
            "--ca", str(tmp_path / "absent.pem"), "--data-dir", str(tmp_path / "node"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**ENV, "COLUMNS": "200"},
    )  # fmt: skip
    assert result.returncode == 2
    assert f"Invalid value for --ca: {tmp_path / 'absent.pem'}: file not found" in result.stderr


@pytest.mark.parametrize("content", ["unused", "-----BEGIN CERTIFICATE-----\nnot base64\n"])
def test_a_ca_file_that_is_not_pem_certificates_is_an_error_naming_it(
    tmp_path: Path, content: str
) -> None:
    """Found when the agent first builds its TLS to the hub (enrollment here):
    a one-line error naming the file, not OpenSSL's traceback."""
    ca = tmp_path / "ca.pem"
    ca.write_text(content)
    result = subprocess.run(
        [
            *fogline_cmd(), "agent", "run", "--hub", "https://127.0.0.1:1", "--ca", str(ca),
            "--data-dir", str(tmp_path / "node"), "--local-port", "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**ENV, "FOGLINE_CLAIM": "a-claim"},
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"error: {ca}: not a CA bundle to verify the hub with: expected PEM certificates" in (
        result.stderr
    ), result.stderr[-2000:]
