"""Hostile review of backup and restore: a backup is the fleet's trust in one file.

A stolen backup must not give up the CA key or the tokens; a passphrase or
database password must not show in a process list; a crafted backup (made
by someone who has the passphrase) must not write outside its target.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from fogline.security import CertificateAuthority, SealedWriter
from tests.support.backup import PASSPHRASE, hub_backup, hub_restore
from tests.support.processes import ENV, HubProcess, fogline_cmd


def test_a_backup_is_0600_even_under_umask_0_and_holds_no_secret_in_the_clear(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    out = tmp_path / "hub.backup"
    env = {**ENV, "FOGLINE_BACKUP_PASSPHRASE": PASSPHRASE}
    args = ["hub", "backup", "--data-dir", str(shared_hub.data_dir), "-o", str(out)]
    done = subprocess.run(
        [*fogline_cmd(), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(0),
    )
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    blob = out.read_bytes()
    secret = shared_hub.token.split(".", 1)[1].encode()
    for clear in (secret, b"PRIVATE KEY", b"SQLite format 3", b"BEGIN CERTIFICATE"):
        assert clear not in blob, clear
    assert PASSPHRASE.encode() not in blob
    assert not list(tmp_path.glob(".*"))  # no partial file or work directory left


def test_there_is_no_passphrase_option_and_a_passphrase_file_others_can_read_is_refused(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    cmd = [*fogline_cmd(), "hub", "backup", "--data-dir", str(shared_hub.data_dir)]
    out = tmp_path / "x.backup"
    bad = subprocess.run(
        [*cmd, "-o", str(out), "--passphrase", PASSPHRASE],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "No such option" in bad.stderr
    loose = tmp_path / "pass"
    loose.write_text(PASSPHRASE + "\n")
    loose.chmod(0o644)
    refused = subprocess.run(
        [*cmd, "-o", str(out), "--passphrase-file", str(loose)],
        env={k: v for k, v in ENV.items() if k != "FOGLINE_BACKUP_PASSPHRASE"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"error: passphrase file {loose}: mode 0644 lets group or others read it; chmod 600 {loose}"
    )
    assert not out.exists()


def test_pg_dump_gets_the_database_password_in_its_environment_not_its_command_line(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "hub"
    data_dir.mkdir()
    CertificateAuthority.load_or_create(data_dir)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    seen = tmp_path / "seen"
    fake = bin_dir / "pg_dump"
    fake.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > {seen}/argv\n'
        f'printf "%s" "$PGPASSWORD" > {seen}/password\n'
        'echo "pg_dump: error: connection refused" >&2\nexit 1\n'
    )
    fake.chmod(0o755)
    seen.mkdir()
    env = {
        **ENV,
        "PATH": f"{bin_dir}:{ENV['PATH']}",
        "FOGLINE_BACKUP_PASSPHRASE": PASSPHRASE,
        "FOGLINE_DB": "postgresql+psycopg://fleet:s3cret-pw@127.0.0.1:1/hub",
    }
    done = subprocess.run(
        [*fogline_cmd(), "hub", "backup", "--data-dir", str(data_dir), "-o", str(tmp_path / "b")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: pg_dump of postgresql+psycopg://fleet:***@127.0.0.1:1/hub failed: "
        "pg_dump: error: connection refused"
    )
    assert "s3cret-pw" not in (seen / "argv").read_text()
    assert "--dbname=postgresql://fleet@127.0.0.1:1/hub" in (seen / "argv").read_text()
    assert (seen / "password").read_text() == "s3cret-pw"
    assert not (tmp_path / "b").exists()


def _crafted(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    """A backup sealed with the right passphrase whose tar holds `members`
    after a valid manifest and database: what a holder of the passphrase could make."""
    manifest = (
        b'{"format": 1, "fogline_version": "0.1.0", "created_at": "2026-01-01T00:00:00Z",'
        b' "database": "sqlite", "schema_revision": null, "artifacts_included": true,'
        b' "files": 1, "file_bytes": 1}'
    )
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in [
            (tarfile.TarInfo("fogline-backup.json"), manifest),
            (tarfile.TarInfo("database/hub.db"), b""),
            *members,
        ]:
            if info.type == tarfile.REGTYPE:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with open(path, "wb") as sink:
        writer = SealedWriter(sink, PASSPHRASE)
        writer.write(plain.getvalue())
        writer.close()
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    return info


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ([(_member("data/../escaped"), b"x")], "not a path inside the data directory"),
        ([(_member("data/a/../../escaped"), b"x")], "not a path inside the data directory"),
        ([(_member("/tmp/escaped"), b"x")], "unexpected member"),
        ([(_member("data//escaped"), b"x")], "not a path inside the data directory"),
        ([(_member("data/" + "d/" * 20 + "f"), b"x")], "not a path inside the data directory"),
        ([(_member("data/link", tarfile.SYMTYPE, "/etc/passwd"), b"")], "not a file"),
        ([(_member("data/hard", tarfile.LNKTYPE, "database/hub.db"), b"")], "not a file"),
        ([(_member("data/ca.pem"), b"x"), (_member("data/ca.pem"), b"y")], "File exists"),
    ],
)
def test_a_crafted_backup_never_writes_outside_its_target(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]], reason: str
) -> None:
    crafted = _crafted(tmp_path / "crafted.backup", members)
    target = tmp_path / "site" / "hub"
    done = hub_restore(crafted, target)
    assert done.returncode == 1, done.stderr
    assert reason in done.stderr and "nothing was restored" in done.stderr, done.stderr
    assert not target.exists()
    assert not (tmp_path / "site" / "escaped").exists()
    assert not Path("/tmp/escaped").exists()


def test_a_backup_taken_with_one_passphrase_does_not_open_with_another(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    out = tmp_path / "hub.backup"
    assert hub_backup(shared_hub.data_dir, out, passphrase="the first passphrase").returncode == 0
    done = hub_restore(out, tmp_path / "new", passphrase="the first passphrasE")
    assert done.returncode == 1 and "wrong passphrase" in done.stderr
    assert not (tmp_path / "new").exists()
