"""The uplink's error tree."""

from fogline import FoglineError
from fogline.agent import _errors as agent_errors
from fogline.agent.uplink import (
    BatchFormatError,
    BatchRejectedError,
    HubTransport,
    HubUnreachableError,
    MemoryHubTransport,
    UplinkError,
)


def test_errors_hang_under_fogline_error_by_fault() -> None:
    for error in (HubUnreachableError, BatchRejectedError):
        assert issubclass(error, UplinkError)
    assert issubclass(UplinkError, FoglineError)
    # one "hub unreachable" for the whole agent: its handlers catch the uplink's
    assert issubclass(HubUnreachableError, agent_errors.HubUnreachableError)
    assert issubclass(BatchFormatError, FoglineError)  # the codec's, from fogline.protocol
    rejected = BatchRejectedError(413, "too large")
    assert (rejected.status, rejected.reason) == (413, "too large")
    assert "HTTP 413" in str(rejected)


def test_the_memory_fake_satisfies_the_port() -> None:
    transport: HubTransport = MemoryHubTransport()
    assert callable(transport.send_batch)
