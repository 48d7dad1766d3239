"""The backup passphrase: from a file (0600) or the environment, never the command line.

A passphrase on the command line is readable by every user of the machine
(/proc/PID/cmdline) and lands in shell history, so there is no option for it.
"""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from fogline.security import TokenFileError, read_token_file

from ._errors import PassphraseError

PASSPHRASE_ENV: Final = "FOGLINE_BACKUP_PASSPHRASE"  # noqa: S105 (a variable's name)
# The passphrase is all that stands between a copied backup and the fleet's
# CA key: short ones fall to a guessing run even through scrypt.
MIN_PASSPHRASE_CHARS: Final = 12


def read_passphrase(file: Path | None, environ: Mapping[str, str] | None = None) -> str:
    """The passphrase from `file` or from FOGLINE_BACKUP_PASSPHRASE; surrounding
    whitespace (a file's trailing newline) is not part of it.

    Raises:
        PassphraseError: neither or both given; the file is unsafe (group or
            others may read it), missing, empty or too large.
    """
    environ = os.environ if environ is None else environ
    from_env = environ.get(PASSPHRASE_ENV, "").strip()
    if file is not None and from_env:
        raise PassphraseError(f"give the passphrase once: --passphrase-file or {PASSPHRASE_ENV}")
    if file is not None:
        try:
            return read_token_file(file)
        except TokenFileError as exc:
            raise PassphraseError(f"passphrase file {exc}") from exc
    if not from_env:
        raise PassphraseError(
            f"no passphrase: pass --passphrase-file FILE (mode 0600) or set {PASSPHRASE_ENV}"
        )
    return from_env


def check_new_passphrase(passphrase: str) -> None:
    """Raises: PassphraseError: too short to protect a backup."""
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise PassphraseError(
            f"the passphrase must have at least {MIN_PASSPHRASE_CHARS} characters "
            f"(got {len(passphrase)})"
        )
