"""Errors of backup and restore; each message is one line that names the file
or database and the reason.

FoglineError
  BackupError            base: the backup or restore was not done
    BackupSourceError    the hub to back up cannot be read: no hub data directory,
                         no database, pg_dump missing or failing
    BackupFileError      the backup file cannot be used: wrong passphrase, damaged,
                         truncated, not a backup, made by a newer Fogline
    RestoreTargetError   where the hub would be restored is not empty, or the
                         database refused the restore
    PassphraseError      no passphrase, given twice, or too short
"""

from fogline._errors import FoglineError


class BackupError(FoglineError):
    """A backup or restore was not done; nothing half-written is left."""


class BackupSourceError(BackupError):
    """The hub to back up cannot be read."""


class BackupFileError(BackupError):
    """The backup file cannot be used; nothing was restored."""


class RestoreTargetError(BackupError):
    """The data directory or database to restore into cannot take the restore."""


class PassphraseError(BackupError):
    """The backup passphrase is missing, given twice, or too short."""
