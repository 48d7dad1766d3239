"""The admin token lives only in its 0600 file and can be rotated while the hub
runs (issue #12: it was printed to stdout, which service managers keep in logs,
and could not be replaced)."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import httpx

from tests.support.processes import ENV, HubProcess, fogline_cmd, start_hub, tls


def _secret(token: str) -> str:
    return token.split(".", 1)[1]


def _status(hub: HubProcess, token: str) -> int:
    with httpx.Client(verify=tls(hub.ca), timeout=10) as client:
        response = client.get(f"{hub.url}/v1/devices", headers={"authorization": f"Bearer {token}"})
    return response.status_code


def _rotate(data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*fogline_cmd(), "hub", "rotate-admin-token", "--data-dir", str(data_dir), *extra],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )


def _printed(hub: HubProcess) -> str:
    return hub.stdout_path.read_text() + hub.log_path.read_text()


def test_the_token_is_written_0600_and_never_printed(hub: HubProcess) -> None:
    token_file = hub.data_dir / "admin-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert _status(hub, hub.token) == 200
    printed = _printed(hub)
    assert _secret(hub.token) not in printed
    assert "hub.admin_token_created" in printed and str(token_file) in printed  # the path only


def test_rotation_while_the_hub_runs_revokes_the_old_token(hub: HubProcess) -> None:
    old = hub.token
    result = _rotate(hub.data_dir)
    assert result.returncode == 0, result.stderr
    new = (hub.data_dir / "admin-token").read_text().strip()
    assert new != old
    assert stat.S_IMODE((hub.data_dir / "admin-token").stat().st_mode) == 0o600
    assert _status(hub, old) == 401
    assert _status(hub, new) == 200
    # nothing of either token on the command's output or the hub's
    for secret in (_secret(old), _secret(new)):
        assert secret not in result.stdout + result.stderr
        assert secret not in _printed(hub)
    # the rotation is audited, and a second one works too
    with httpx.Client(verify=tls(hub.ca), timeout=10) as client:
        audit = client.get(f"{hub.url}/v1/audit", headers={"authorization": f"Bearer {new}"})
    assert [e["action"] for e in audit.json()] == ["admin_token.rotate"], audit.text
    assert _rotate(hub.data_dir).returncode == 0
    newer = (hub.data_dir / "admin-token").read_text().strip()
    assert _status(hub, new) == 401 and _status(hub, newer) == 200


def test_a_restart_after_rotation_keeps_the_rotated_token(tmp_path: Path) -> None:
    hub = start_hub(tmp_path / "hub")
    try:
        hub.stop()
        assert _rotate(hub.data_dir).returncode == 0  # also with the hub stopped
        rotated = (hub.data_dir / "admin-token").read_text().strip()
        hub.start()  # must not mint a third token nor overwrite the file
        assert hub.token == rotated
        assert _status(hub, rotated) == 200
    finally:
        hub.stop()


def test_rotation_on_postgresql_with_db(tmp_path: Path, postgres_url: str) -> None:
    hub = start_hub(tmp_path / "hub", db_url=postgres_url)
    try:
        old = hub.token
        result = _rotate(hub.data_dir, "--db", postgres_url)
        assert result.returncode == 0, result.stderr
        new = (hub.data_dir / "admin-token").read_text().strip()
        assert _status(hub, old) == 401 and _status(hub, new) == 200
    finally:
        hub.stop()


def test_rotation_without_a_hub_is_one_line_and_exit_1(tmp_path: Path) -> None:
    missing = _rotate(tmp_path / "nowhere")
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1 and "no such hub data directory" in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = _rotate(tmp_path / "empty")
    assert empty.returncode == 1 and "no hub database" in empty.stderr
    assert not (tmp_path / "empty" / "admin-token").exists()
    assert not (tmp_path / "empty" / "hub.db").exists()  # nothing created on the way
