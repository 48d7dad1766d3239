"""The supervisor's error tree (its public names are pinned in tests/test_exports.py)."""

from fogline import FoglineError
from fogline.agent.supervisor import ModuleStartError, SupervisorError, UnknownModuleError


def test_errors_hang_under_fogline_error() -> None:
    assert issubclass(SupervisorError, FoglineError)
    assert issubclass(ModuleStartError, SupervisorError)
    assert issubclass(UnknownModuleError, SupervisorError)
    error = ModuleStartError("gateway", "[Errno 2] No such file or directory: 'gw'")
    assert str(error) == "module 'gateway': cannot start: [Errno 2] No such file or directory: 'gw'"
    assert (error.name, error.reason) == ("gateway", "[Errno 2] No such file or directory: 'gw'")
