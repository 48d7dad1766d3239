"""The whole `fogline` command: every operator command and the daemons,
each imported (`fogline.cli.app`; a run of `fogline` imports only the
command it runs, see _commands)."""

from ._commands import whole

app = whole()
