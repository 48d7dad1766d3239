"""The `fogline` command: operator commands and the daemons.

`fogline X ...` imports the module of command X alone (the table in
_commands): the agent runs for months on small nodes, and every other
command's imports (TUF and SBOM libraries, the simulator, the vulnerability
database) cost it resident memory it never uses (BENCHMARKS.md, "Agent idle
RSS"); a short-lived command such as `fogline apply` would pay their import
time on every run, and apply's start-up is part of the time a change takes
to reach the fleet (BENCHMARKS.md, "Desired-state propagation").
`fogline --help` lists every command from the table, importing none.
"""

import sys
from typing import TYPE_CHECKING

from fogline._errors import FoglineError
from fogline._lazy import lazy_exports

if TYPE_CHECKING:
    import typer


def _command(argv: list[str]) -> "typer.Typer":
    """The command that runs `argv`: the root with its command alone, or with
    every command listed (no command named, or one that does not exist)."""
    from ._commands import BY_NAME, command_word, listing, one_command

    word = command_word(argv)
    return one_command(word) if word in BY_NAME else listing()


def skip_httpx_cli() -> None:
    """Keep httpx's own command-line tool out of this process.

    `import httpx` imports `httpx._main` (its `httpx` command: click,
    pygments, Rich's syntax and progress) whenever click is installed, and
    falls back to a stub `httpx.main` on ImportError. Fogline never runs it;
    importing it cost every `fogline` process about 35 ms of CPU, and the
    agent about 4 MB resident with Rich and Pygments (BENCHMARKS.md, "Agent
    idle RSS"; the agent's own interpreter calls this too: _agent_main).
    A None entry in sys.modules makes that import fail, as if click were
    missing; done only before httpx is first imported.
    """
    if "httpx" not in sys.modules:
        # None is the import system's "not importable" mark; typeshed types only modules.
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def main() -> None:
    """Entry point: one line on stderr for expected errors, never a traceback."""
    skip_httpx_cli()
    try:
        _command(sys.argv[1:])()
    except FoglineError as exc:
        from ._common import err_console, safe_text

        # Escaped and unwrapped: one line, whatever brackets the message holds.
        err_console.print(f"[red]error[/red]: {safe_text(exc)}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


# `app` (the whole command) is built on first use, not at import: see above.
__getattr__ = lazy_exports(__name__, {"app": "._app"})


__all__ = ["app", "main"]
