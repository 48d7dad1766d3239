"""`fogline hub backup` and `fogline hub restore`: progress on stderr, one line when done.

At module level Typer alone: `fogline hub serve` imports this module to
register the commands (the bars: `_backup_progress`)."""

from pathlib import Path
from typing import Annotated

import typer

PassphraseFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        help="A file (mode 0600) holding the backup passphrase. Or set "
        "FOGLINE_BACKUP_PASSPHRASE. Never on the command line, which every user can read.",
        show_default=False,
    ),
]
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="FOGLINE_DB",
        help="PostgreSQL URL, as for serve (default: SQLite in DATA_DIR).",
        show_default=False,
    ),
]


def _mib(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MiB"


def backup_command(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="The running hub's data directory (as for serve).")
    ],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="The backup file to write (must not exist)."),
    ],
    db: DbOpt = None,
    passphrase_file: PassphraseFileOpt = None,
    artifacts: Annotated[
        bool,
        typer.Option(
            "--artifacts/--no-artifacts",
            help="Include the artifact store (release archives). Without it the backup is "
            "small, and each release must be pushed again after a restore.",
        ),
    ] = True,
) -> None:
    """Write an encrypted backup of a hub while it runs: database, CA, keys, token, artifacts.

    SQLite is copied with its online backup, PostgreSQL with pg_dump; then the
    data directory's files. The file is encrypted with the passphrase
    (scrypt, AES-256-GCM) and created 0600.
    """
    from fogline.hub.backup import BackupRequest, backup_hub, read_passphrase

    from ._backup_progress import progress_bars
    from ._common import err_console, safe_text

    passphrase = read_passphrase(passphrase_file)
    request = BackupRequest(data_dir, output, db, include_artifacts=artifacts)
    with progress_bars() as progress:
        summary = backup_hub(request, passphrase, progress)
    for name in summary.skipped:
        err_console.print(f"skipped (not a regular file): {safe_text(name)}", highlight=False)
    if summary.audit_problem:
        err_console.print(
            f"warning: the backup is not in the audit trail: {safe_text(summary.audit_problem)}",
            highlight=False,
        )
    artifacts_note = "artifacts included" if summary.artifacts_included else "artifacts left out"
    err_console.print(
        f"backup written: {safe_text(summary.output)} ({_mib(summary.backup_bytes)}; "
        f"{summary.database} database, {summary.files} files, {artifacts_note})",
        highlight=False,
        soft_wrap=True,
    )


def restore_command(
    data_dir: Annotated[
        Path,
        typer.Option("--data-dir", help="The new hub's data directory: new or empty."),
    ],
    backup: Annotated[Path, typer.Option("--input", "-i", help="The backup file.")],
    db: DbOpt = None,
    passphrase_file: PassphraseFileOpt = None,
) -> None:
    """Rebuild a hub from a backup into a new or empty data directory (and an empty database).

    Then `fogline hub serve --data-dir DIR [--db URL]` serves the same fleet:
    same CA, device certificates, tokens, deployments and rollouts. Nothing is
    put in place unless the whole file is authentic and restores.
    """
    from fogline.hub.backup import RestoreRequest, read_passphrase, restore_hub

    from ._backup_progress import progress_bars
    from ._common import err_console, safe_text

    passphrase = read_passphrase(passphrase_file)
    with progress_bars() as progress:
        summary = restore_hub(RestoreRequest(backup, data_dir, db), passphrase, progress)
    if summary.audit_problem:
        err_console.print(
            f"warning: the restore is not in the audit trail: {safe_text(summary.audit_problem)}",
            highlight=False,
        )
    artifacts_note = (
        ""
        if summary.artifacts_included
        else "; artifacts were left out: push each release again "
        "(`fogline release push --force ARCHIVE`)"
    )
    err_console.print(
        f"restored into {safe_text(summary.data_dir)} ({summary.database} database "
        f"{safe_text(summary.database_shown)}, {summary.files} files; backup of "
        f"{summary.created_at:%Y-%m-%d %H:%M:%S} UTC by Fogline {summary.fogline_version})"
        f"{artifacts_note}",
        highlight=False,
        soft_wrap=True,
    )
