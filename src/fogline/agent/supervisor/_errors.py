"""The supervisor's exception tree (drawn in the package docstring)."""

from fogline import FoglineError


class SupervisorError(FoglineError):
    """Base of every error the supervisor and its runtimes raise on purpose."""


class ModuleStartError(SupervisorError):
    """The runtime could not start the module's command (missing binary, bad workdir...).

    The supervisor turns it into the module's status (`last_error`) and
    retries per the restart policy; it never escapes `Supervisor.run`.
    """

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"module {name!r}: cannot start: {reason}")
        self.name, self.reason = name, reason


class UnknownModuleError(SupervisorError):
    """A caller named a module the supervisor does not manage."""

    def __init__(self, name: str) -> None:
        super().__init__(f"module {name!r} is not supervised")
        self.name = name
