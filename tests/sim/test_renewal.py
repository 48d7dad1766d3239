"""A virtual fleet renews its certificates and moves to a rotated CA, driven
by the agent's own Renewer, against a real hub with short lifetimes.

FOGLINE_SIM_RENEW_DEVICES sets the fleet's size (default 30; the issue's
1,000 runs the same scenario, slower, with longer certificates)."""

import asyncio
import os
from pathlib import Path

import pytest
from cryptography import x509

from fogline.security import ca_key_id, issuer_key_id, read_trust_bundle
from fogline.sim import FleetConfig, FleetStats, VirtualFleet, parse_faults
from tests.sim.helpers import fleet_claim, sim_devices
from tests.support.processes import start_hub, wait_until_async

DEVICES = int(os.environ.get("FOGLINE_SIM_RENEW_DEVICES", "30"))
# Long enough that a renewal round of the whole fleet fits well inside a
# third of it on a shared 2-core machine: 15 s for 30 nodes, 60 s for 1,000.
VALIDITY_S = max(15, round(DEVICES * 0.06))


@pytest.mark.timeout(900 if DEVICES > 100 else 150)
def test_a_virtual_fleet_renews_three_times_and_moves_to_a_new_ca_losing_no_device(
    tmp_path: Path,
) -> None:
    hub = start_hub(
        tmp_path / "hub",
        extra_args=[
            "--device-cert-validity",
            f"{VALIDITY_S}s",
            "--report-interval",
            "3",
            # Every virtual node connects from 127.0.0.1.
            "--max-connections-per-address",
            "0",
        ],
    )
    prefix = "renew"
    fleet = VirtualFleet(
        FleetConfig(
            hub_url=hub.url,
            ca_path=hub.ca,
            claim=fleet_claim(hub, DEVICES, prefix),
            devices=DEVICES,
            data_dir=tmp_path / "fleet",
            faults=parse_faults("loss=0.02"),
            prefix=prefix,
            seed=3,
            # Boots spread as a real fleet's are: 20 enrollments a second at most.
            start_spread_s=max(2.0, DEVICES / 20),
        )
    )
    wait_s = 60 + DEVICES / 4 + VALIDITY_S

    def node_ca(node_dir: Path) -> str | None:
        cert = x509.load_pem_x509_certificate((node_dir / "identity" / "cert.pem").read_bytes())
        return issuer_key_id(cert)

    async def scenario() -> tuple[FleetStats, str]:
        stop = asyncio.Event()
        running = asyncio.create_task(fleet.run(stop=stop))
        try:
            await wait_until_async(
                lambda: all(n.stats.renewals >= 1 for n in fleet.nodes),
                wait_s,
                "a first renewal on every node",
                0.5,
            )
            await asyncio.to_thread(hub.cli, "ca", "rotate", "--data-dir", str(hub.data_dir))
            new_id = ca_key_id(read_trust_bundle(hub.ca)[0])
            await wait_until_async(
                lambda: all(node_ca(n.data_dir) == new_id for n in fleet.nodes),
                wait_s,
                "every node on the new CA",
                0.5,
            )
            await asyncio.to_thread(hub.cli, "ca", "retire-old", "--data-dir", str(hub.data_dir))
            await wait_until_async(
                lambda: all(n.stats.renewals >= 4 for n in fleet.nodes),
                wait_s,
                "three renewals and the move on every node",
                0.5,
            )
        finally:
            stop.set()
        return await running, new_id

    stats, new_id = asyncio.run(scenario())
    assert stats.nodes == stats.enrolled == DEVICES and stats.errors == []
    assert stats.renewals >= 4 * DEVICES
    rows = sim_devices(hub, prefix)
    assert len(rows) == DEVICES  # nobody enrolled twice, nobody lost
    assert all(row["status"] == "online" for row in rows)
    assert all(node_ca(n.data_dir) == new_id for n in fleet.nodes)
