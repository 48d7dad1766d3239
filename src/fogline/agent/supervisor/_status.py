"""`ModuleStatus`: a frozen, JSON-able snapshot of one supervised module."""

from dataclasses import asdict, dataclass
from typing import Any

from fogline.protocol import ModuleState


@dataclass(frozen=True, slots=True)
class ModuleStatus:
    """What the supervisor knows about one module, for reports and `wait_healthy`."""

    name: str
    version: str
    state: ModuleState
    pid: int | None  # None while no process runs
    restarts: int  # automatic restarts of this version (a spec change resets it)
    last_exit_code: int | None  # negative: killed by that signal (-9: SIGKILL)
    last_error: str | None  # the last thing that went wrong, in words
    stderr_tail: str  # the end of stderr (about 2 KB) at the last exit, UTF-8 with
    # undecodable bytes replaced
    since: float  # the supervisor's clock() when `state` was entered

    def to_dict(self) -> dict[str, Any]:
        """The status as a dict of JSON types."""
        return asdict(self)
