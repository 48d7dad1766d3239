"""`fogline sensors token|account`: a secret in a 0600 file, its digest in the manifest entry."""

import hashlib
import subprocess
from pathlib import Path

import yaml

from fogline.security import sensor_password_matches
from tests.support.processes import ENV, fogline_cmd


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*fogline_cmd(), "sensors", *args], capture_output=True, text=True, env=ENV, timeout=60
    )


def test_a_new_token_is_written_0600_and_only_its_digest_is_printed(tmp_path: Path) -> None:
    secret_file = tmp_path / "line-1.token"
    first = _run("token", "line-1", "--secret-file", str(secret_file))
    assert first.returncode == 0, first.stderr
    token = secret_file.read_text().strip()
    assert secret_file.stat().st_mode & 0o777 == 0o600 and len(token) >= 40
    assert token not in first.stdout
    assert yaml.safe_load(first.stdout) == [
        {"name": "line-1", "sha256": hashlib.sha256(token.encode()).hexdigest()}
    ]
    again = _run("token", "line-1", "--secret-file", str(secret_file))  # reads, never replaces
    assert again.stdout == first.stdout and secret_file.read_text().strip() == token


def test_an_account_prints_a_mosquitto_hash_of_the_password_in_the_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "press-7.password"
    secret_file.write_text("sensor-pass-1234\n")
    secret_file.chmod(0o600)
    result = _run("account", "press-7", "--secret-file", str(secret_file))
    assert result.returncode == 0, result.stderr
    [entry] = yaml.safe_load(result.stdout)
    assert entry["username"] == "press-7" and "sensor-pass-1234" not in result.stdout
    assert sensor_password_matches("sensor-pass-1234", entry["passwordHash"])


def test_a_secret_file_others_can_read_is_refused_in_one_line(tmp_path: Path) -> None:
    secret_file = tmp_path / "press-7.password"
    secret_file.write_text("sensor-pass-1234\n")
    secret_file.chmod(0o644)
    result = _run("account", "press-7", "--secret-file", str(secret_file))
    assert result.returncode == 1 and "chmod 600" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
