"""The uplink's error tree."""

from fogline import FoglineError, agent, hubclient
from fogline.agent.uplink import (
    BatchFormatError,
    BatchRejectedError,
    HubRefusedError,
    HubTransport,
    HubUnreachableError,
    MemoryHubTransport,
    UplinkError,
)


def test_errors_hang_under_fogline_error_by_fault() -> None:
    assert issubclass(BatchRejectedError, UplinkError)
    assert issubclass(UplinkError, FoglineError)
    # one "hub unreachable" for the agent, the uplink and the CLI: fogline.hubclient's
    assert HubUnreachableError is hubclient.HubUnreachableError is agent.HubUnreachableError
    assert HubRefusedError is hubclient.HubRefusedError
    assert issubclass(BatchFormatError, FoglineError)  # the codec's, from fogline.protocol
    rejected = BatchRejectedError(413, "too large")
    assert (rejected.status, rejected.reason) == (413, "too large")
    assert "HTTP 413" in str(rejected)


def test_the_memory_fake_satisfies_the_port() -> None:
    transport: HubTransport = MemoryHubTransport()
    assert callable(transport.send_batch)
