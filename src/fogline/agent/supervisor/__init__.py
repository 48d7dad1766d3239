"""The module supervisor: runs the desired module versions and keeps them up.

`Supervisor.apply` converges on a mapping of `RunSpec`s; `Supervisor.run`
owns one lifecycle task per module, which starts the process through a
`ModuleRuntime`, probes its health, restarts it with backoff per its
`RestartPolicy`, and reports crash loops. `ProcessRuntime` runs local
processes (own session, minimal environment, rlimits, stdout/stderr through
pipes into size-bounded rotating logs, optionally as another user:
`ModuleUser`); `MemoryRuntime` scripts fake ones
for tests and the fleet simulator. The lifecycle is the table in `_state`.

Errors:

    FoglineError
      SupervisorError         base of the supervisor's errors
        ModuleStartError      the module's command cannot be executed; reported
                              in its status, never raised out of run()
        UnknownModuleError    stop()/restart()/wait_healthy() named a module not supervised
"""

from typing import TYPE_CHECKING

from fogline._lazy import lazy_exports

from ._errors import ModuleStartError, SupervisorError, UnknownModuleError
from ._logs import (
    LogFollower,
    LogPosition,
    RotatingLog,
    Stream,
    follow_log,
    log_path,
    read_log_tail,
)
from ._process import ProcessRuntime
from ._runtime import HealthVerdict, ModuleProcess, ModuleRuntime, module_env
from ._spec import HealthCheck, HealthKind, MetricsTarget, Resources, RestartPolicy, RunSpec
from ._state import TRANSITIONS, Event, State, is_probe_due, next_state
from ._status import ModuleStatus
from ._supervisor import Supervisor
from ._user import ModuleUser, access_problem, resolve_module_user

if TYPE_CHECKING:
    from ._memory import MemoryBehaviour, MemoryProcess, MemoryRuntime

# The scripted fakes (tests, the simulator) are imported on first use: an
# agent never runs them, and their code would stay resident in it.
__getattr__ = lazy_exports(
    __name__,
    {name: "._memory" for name in ("MemoryBehaviour", "MemoryProcess", "MemoryRuntime")},
)

__all__ = [
    "TRANSITIONS",
    "Event",
    "HealthCheck",
    "HealthKind",
    "HealthVerdict",
    "LogFollower",
    "LogPosition",
    "MemoryBehaviour",
    "MemoryProcess",
    "MemoryRuntime",
    "MetricsTarget",
    "ModuleProcess",
    "ModuleRuntime",
    "ModuleStartError",
    "ModuleStatus",
    "ModuleUser",
    "ProcessRuntime",
    "Resources",
    "RestartPolicy",
    "RotatingLog",
    "RunSpec",
    "State",
    "Stream",
    "Supervisor",
    "SupervisorError",
    "UnknownModuleError",
    "access_problem",
    "follow_log",
    "is_probe_due",
    "log_path",
    "module_env",
    "next_state",
    "read_log_tail",
    "resolve_module_user",
]
