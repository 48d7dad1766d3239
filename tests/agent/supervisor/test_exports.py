"""The supervisor's public names are pinned: adding or removing one is a decision."""

import fogline.agent.supervisor as supervisor_pkg
from fogline import FoglineError
from fogline.agent.supervisor import ModuleStartError, SupervisorError, UnknownModuleError


def test_all_is_pinned() -> None:
    assert supervisor_pkg.__all__ == [
        "TRANSITIONS",
        "Event",
        "HealthCheck",
        "HealthKind",
        "HealthVerdict",
        "MemoryBehaviour",
        "MemoryProcess",
        "MemoryRuntime",
        "ModuleProcess",
        "ModuleRuntime",
        "ModuleStartError",
        "ModuleState",
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
    for name in supervisor_pkg.__all__:
        assert getattr(supervisor_pkg, name) is not None


def test_errors_hang_under_fogline_error() -> None:
    assert issubclass(SupervisorError, FoglineError)
    assert issubclass(ModuleStartError, SupervisorError)
    assert issubclass(UnknownModuleError, SupervisorError)
    error = ModuleStartError("gateway", "[Errno 2] No such file or directory: 'gw'")
    assert str(error) == "module 'gateway': cannot start: [Errno 2] No such file or directory: 'gw'"
    assert (error.name, error.reason) == ("gateway", "[Errno 2] No such file or directory: 'gw'")
