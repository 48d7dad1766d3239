"""The agent killed with SIGKILL inside an update ends on the old or the new version,
healthy, and reports it truthfully. Every crash point runs in
benchmarks/bench_crash_points.py; here a representative subset."""

import pytest

from tests.support.crash import HUB_ARGS, prepare_fleet, run_case
from tests.support.processes import free_port, start_hub


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    hub = start_hub(root / "hub", extra_args=HUB_ARGS)
    try:
        yield prepare_fleet(hub, root, free_port())
    finally:
        hub.stop()


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    "point", ["download:chunk", "unpack", "after-switch", "enter:HEALTH", "commit:recorded"]
)
def test_update_survives_sigkill_at(fleet, point):
    result = run_case(fleet, point.replace(":", "-").lower(), point)
    assert result.crashed, f"the agent was not killed at {point}"
    assert result.served == "2.0.0"
    assert result.reported == ("2.0.0", "healthy", "in-sync")


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("point", ["rollback:switched"])
def test_failed_update_survives_sigkill_at(fleet, point):
    result = run_case(fleet, "rb-" + point.replace(":", "-"), point, bad_update=True)
    assert result.crashed, f"the agent was not killed at {point}"
    assert result.served == "2.0.0"
    assert result.reported == ("2.0.0", "healthy", "error")
