"""Sensor password hashes in Mosquitto's own format, both ways."""

import shutil
import subprocess
from pathlib import Path

import pytest

from fogline.protocol import password_hash_problem
from fogline.security import hash_sensor_password, sensor_password_matches


def test_a_hash_verifies_its_password_only() -> None:
    digest = hash_sensor_password("correct horse", iterations=101)
    assert password_hash_problem(digest) is None
    assert sensor_password_matches("correct horse", digest)
    assert not sensor_password_matches("correct hors", digest)
    assert not sensor_password_matches("correct horse", "not a hash")


def test_two_hashes_of_one_password_differ_by_their_salt() -> None:
    assert hash_sensor_password("pw", iterations=101) != hash_sensor_password("pw", iterations=101)


def test_an_empty_password_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        hash_sensor_password("")


def test_a_line_mosquitto_passwd_wrote_verifies_here(tmp_path: Path) -> None:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd is not installed")
    path = tmp_path / "passwords"
    subprocess.run([tool, "-c", "-b", str(path), "s1", "sensor-secret"], check=True, timeout=30)
    username, _, digest = path.read_text().strip().partition(":")
    assert username == "s1" and password_hash_problem(digest) is None
    assert sensor_password_matches("sensor-secret", digest)
    assert not sensor_password_matches("sensor-secreT", digest)
