"""The `fogline` command: operator commands and the daemons.

`fogline agent ...` builds a command with the agent's group alone: the
agent runs for months on small nodes, and every other command's imports
(TUF and SBOM libraries, the simulator, the vulnerability database) cost it
resident memory it never uses (BENCHMARKS.md, "Agent idle RSS").
"""

import sys
from typing import TYPE_CHECKING, Any

from fogline._errors import FoglineError

if TYPE_CHECKING:
    import typer


def _command(argv: list[str]) -> "typer.Typer":
    """The command that runs `argv`: the agent's alone for `agent`, else the whole one."""
    if argv[:1] == ["agent"]:
        from ._agent import app as agent_app
        from ._root import new_app

        app = new_app()
        app.add_typer(agent_app, name="agent")
        return app
    from ._app import app as whole

    return whole


def main() -> None:
    """Entry point: one line on stderr for expected errors, never a traceback."""
    try:
        _command(sys.argv[1:])()
    except FoglineError as exc:
        from ._common import err_console, safe_text

        # Escaped and unwrapped: one line, whatever brackets the message holds.
        err_console.print(f"[red]error[/red]: {safe_text(exc)}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


def __getattr__(name: str) -> Any:
    # `app` (the whole command) is built on first use, not at import: see above.
    if name == "app":
        from ._app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["app", "main"]
