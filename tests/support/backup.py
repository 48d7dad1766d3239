"""`fogline hub backup` and `fogline hub restore` as real subprocesses, for tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .processes import ENV, fogline_cmd

PASSPHRASE = "a long test passphrase, 2 parts"


def hub_backup(
    data_dir: Path,
    output: Path,
    *,
    db_url: str | None = None,
    passphrase: str = PASSPHRASE,
    extra: tuple[str, ...] = (),
    timeout_s: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run `fogline hub backup` with the passphrase in the environment."""
    args = [*fogline_cmd(), "hub", "backup", "--data-dir", str(data_dir), "-o", str(output)]
    return _run([*args, *(["--db", db_url] if db_url else []), *extra], passphrase, timeout_s)


def hub_restore(
    backup: Path,
    data_dir: Path,
    *,
    db_url: str | None = None,
    passphrase: str = PASSPHRASE,
    timeout_s: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run `fogline hub restore` with the passphrase in the environment."""
    args = [*fogline_cmd(), "hub", "restore", "--data-dir", str(data_dir), "-i", str(backup)]
    return _run([*args, *(["--db", db_url] if db_url else [])], passphrase, timeout_s)


def _run(args: list[str], passphrase: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in ENV.items() if k != "FOGLINE_DB"}
    env["FOGLINE_BACKUP_PASSPHRASE"] = passphrase
    env["COLUMNS"] = "200"
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout_s)
