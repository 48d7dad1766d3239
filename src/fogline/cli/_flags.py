"""Typer options that the daemons' commands share with others, importing
Typer alone: `fogline hub serve` imports them before its exec, and every
library imported there is imported again by the hub's program (`_hub_main`),
so the command line stays as small as it can (BENCHMARKS.md, hub start-up).
"""

from pathlib import Path
from typing import Annotated

import typer

from fogline._log import LOG_FORMAT_ENV, LogFormat

LogFormatOpt = Annotated[
    LogFormat | None,
    typer.Option(
        "--log-format",
        envvar=LOG_FORMAT_ENV,
        help="human (local time, one readable line per event; the default on a terminal) "
        "or json (one object per line; the default otherwise).",
        show_default=False,
    ),
]

CaPassphraseOpt = Annotated[
    Path | None,
    typer.Option(
        "--ca-key-passphrase-file",
        help="File (mode 0600) holding the passphrase that encrypts the CA key at rest.",
        show_default=False,
    ),
]
DataDirOpt = Annotated[
    Path, typer.Option("--data-dir", help="The hub's data directory (as for serve).")
]
