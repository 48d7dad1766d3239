"""Backup and restore of a hub: its trust (CA key, TLS key, admin token) and its state.

_backup      `fogline hub backup`: database first, then the data directory's files
_restore     `fogline hub restore`: staged, authenticated to the last byte, then put in place
_database    SQLite's online backup; pg_dump and pg_restore
_layout      what a backup holds (the manifest and member names) and what it leaves out
_passphrase  where the passphrase comes from (a 0600 file or the environment)
_progress    the progress port the CLI draws with Rich
_errors      BackupError and its tree

The file is a tar stream sealed with a passphrase (fogline.security's
SealedWriter: scrypt, AES-256-GCM per chunk).
"""

from ._backup import BackupRequest, BackupSummary, backup_hub
from ._errors import (
    BackupError,
    BackupFileError,
    BackupSourceError,
    PassphraseError,
    RestoreTargetError,
)
from ._layout import BackupManifest
from ._passphrase import MIN_PASSPHRASE_CHARS, PASSPHRASE_ENV, read_passphrase
from ._progress import Advance, NoProgress, Progress
from ._restore import RestoreRequest, RestoreSummary, restore_hub

__all__ = [
    "MIN_PASSPHRASE_CHARS",
    "PASSPHRASE_ENV",
    "Advance",
    "BackupError",
    "BackupFileError",
    "BackupManifest",
    "BackupRequest",
    "BackupSourceError",
    "BackupSummary",
    "NoProgress",
    "PassphraseError",
    "Progress",
    "RestoreRequest",
    "RestoreSummary",
    "RestoreTargetError",
    "backup_hub",
    "read_passphrase",
    "restore_hub",
]
