"""What goes into a backup from the data directory, and where the passphrase comes from."""

import os
from pathlib import Path

import pytest

from fogline.hub.backup import BackupFileError, PassphraseError, read_passphrase
from fogline.hub.backup._layout import check_member_name, list_data_dir


def _touch(path: Path, data: bytes = b"x", mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)


def test_the_live_database_uploads_in_progress_deltas_and_temp_files_stay_out(
    tmp_path: Path,
) -> None:
    for name in ("hub.db", "hub.db-wal", "hub.db-shm", "hub.db-journal", ".admin-token.tmp"):
        _touch(tmp_path / name)
    _touch(tmp_path / "artifacts" / "tmp" / "upload-1.part")
    _touch(tmp_path / "artifacts" / "deltas" / "ab" / "cd.zst")  # a cache, rebuilt on demand
    _touch(tmp_path / "ca-key.pem", mode=0o600)
    _touch(tmp_path / "tls" / "hub.pem")
    _touch(tmp_path / "artifacts" / "sha256" / "ab" / "cdef", b"archive")
    _touch(tmp_path / "notes" / "hub.db")  # only the top-level database is the live one
    os.symlink("/etc/passwd", tmp_path / "passwd-link")

    listing = list_data_dir(tmp_path, include_artifacts=True)
    names = {"/".join(f.parts): f for f in listing.files}
    assert set(names) == {"ca-key.pem", "tls/hub.pem", "artifacts/sha256/ab/cdef", "notes/hub.db"}
    assert names["ca-key.pem"].mode == 0o600
    assert names["artifacts/sha256/ab/cdef"].size == len(b"archive")
    assert listing.skipped == ("passwd-link",)

    without = list_data_dir(tmp_path, include_artifacts=False)
    assert {"/".join(f.parts) for f in without.files} == {
        "ca-key.pem",
        "tls/hub.pem",
        "notes/hub.db",
    }


@pytest.mark.parametrize(
    "name",
    ["data/../x", "data/a/../../x", "/data/x", "data//x", "data/./x", "data/x/", "data/", "x"],
)
def test_member_names_that_leave_the_data_directory_are_refused(name: str) -> None:
    with pytest.raises(BackupFileError, match="not a path inside the data directory"):
        check_member_name(name)


def test_member_names_inside_are_split_into_parts() -> None:
    assert check_member_name("data/artifacts/sha256/ab/cd") == ("artifacts", "sha256", "ab", "cd")


def test_the_passphrase_comes_from_one_place(tmp_path: Path) -> None:
    env = {"FOGLINE_BACKUP_PASSPHRASE": "  from the environment \n"}
    assert read_passphrase(None, env) == "from the environment"
    secret = tmp_path / "pass"
    secret.write_text("from a file\n")
    secret.chmod(0o600)
    assert read_passphrase(secret, {}) == "from a file"
    with pytest.raises(PassphraseError, match="give the passphrase once"):
        read_passphrase(secret, env)
    with pytest.raises(PassphraseError, match="no passphrase"):
        read_passphrase(None, {})
    with pytest.raises(PassphraseError, match="cannot open"):
        read_passphrase(tmp_path / "missing", {})
