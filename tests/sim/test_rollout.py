"""A rollout to a virtual fleet whose canary finds the release unhealthy."""

import asyncio
import json
from pathlib import Path

import pytest

from fogline.protocol import UpdateState
from fogline.sim import FleetConfig, FleetStats, VirtualFleet, parse_faults
from tests.sim.helpers import deployment, fleet_claim, push_release, sim_devices
from tests.support.processes import HubProcess, wait_until_async


def rollout_status(hub: HubProcess, name: str) -> dict[str, object]:
    with hub.client() as client:  # polled: an API call, not a CLI process per poll
        return dict(client.get(f"/v1/rollouts/{name}").json())


@pytest.mark.parametrize(
    ("on_failure", "final"), [("pause", "paused"), ("rollback", "rolled-back")]
)
def test_an_unhealthy_canary_stops_the_rollout_as_the_policy_says(
    shared_hub: HubProcess, tmp_path: Path, on_failure: str, final: str
) -> None:
    hub, prefix, module = shared_hub, f"canary-{on_failure}", f"web-{on_failure}"
    push_release(hub, tmp_path, module, ["3.0.0"])
    fleet = VirtualFleet(
        FleetConfig(
            hub_url=hub.url,
            ca_path=hub.ca,
            claim=fleet_claim(hub, 4, prefix),
            devices=4,
            data_dir=tmp_path / "fleet",
            faults=parse_faults(f"health-fail:{module}@3.0.0=1.0"),
            prefix=prefix,
        )
    )
    manifest = tmp_path / "web.yaml"
    manifest.write_text(
        deployment(
            prefix,
            modules=f"[{{name: {module}, release: {module}@3.0.0}}]",
            rollout=f"{{waves: [1, 100%], bake: 1s, waveTimeout: 20s, onFailure: {on_failure}}}",
        )
    )

    async def scenario() -> tuple[FleetStats, dict[str, object]]:
        stop = asyncio.Event()
        running = asyncio.create_task(fleet.run(stop=stop))
        try:
            await wait_until_async(
                lambda: len(sim_devices(hub, prefix)) == 4, 30, "enrolled", 0.2, in_thread=True
            )
            await asyncio.to_thread(hub.cli, "apply", "-f", str(manifest))
            view = await wait_until_async(
                lambda: (v := rollout_status(hub, prefix))["state"] == final and v,
                30,
                final,
                0.2,
                in_thread=True,
            )
        finally:
            stop.set()
        return await running, view

    stats, view = asyncio.run(scenario())
    assert "maxFailures" in str(view["reason"])
    shown = json.loads(hub.cli("rollout", "status", prefix, "-o", "json").stdout)
    assert shown["state"] == final and shown["reason"] == view["reason"]
    canary, *rest = fleet.nodes  # waves take devices in name order
    assert canary.modules is not None
    # The canary really tried: downloaded, installed, failed its health gate, rolled back.
    assert canary.modules.results[module].state is UpdateState.FAILED
    assert "not healthy" in str(canary.modules.results[module].error)
    assert canary.modules.updater.installed(module) is None
    assert stats.traffic.artifact_bytes > 0
    for node in rest:  # the second wave never started
        assert node.modules is not None and module not in node.modules.results
