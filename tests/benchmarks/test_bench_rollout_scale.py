"""The rollout benchmark's simulated devices run the agent's real updater, so a
rollout they "succeed" was verified and installed: an artifact whose bytes do
not match the release's digest is refused and reported failed (before, such a
device downloaded the bytes, threw them away and reported the module healthy)."""

import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_rollout_scale import (
    MODULE,
    FleetJob,
    FleetStats,
    deployment,
    make_release,
    run_fleet,
)
from tests.support.device import enroll_device
from tests.support.processes import HubProcess


def _device_row(hub: HubProcess, name: str) -> dict[str, Any]:
    with hub.client() as client:
        rows = client.get("/v1/devices").json()
    return next(row for row in rows if row["name"] == name)


def _update_state(hub: HubProcess, name: str) -> str | None:
    """The outcome of the device's last update of MODULE, as it reported it."""
    reported = _device_row(hub, name).get("reported") or {}
    update = ((reported.get("modules") or {}).get("updates") or {}).get(MODULE)
    return update.get("state") if update else None


def test_a_device_refuses_an_artifact_whose_bytes_do_not_match_the_digest(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    hub = shared_hub
    digest = make_release(hub, tmp_path, 1)
    # A compromised artifact store or mirror: the same length, other bytes.
    stored = next(p for p in hub.data_dir.rglob(digest.split(":", 1)[1][2:]) if p.is_file())
    data = bytearray(stored.read_bytes())
    data[-100] ^= 0xFF
    stored.write_bytes(bytes(data))
    device = enroll_device(hub, hub.create_claim(max_uses=1), "bench-tampered", tmp_path)
    (tmp_path / "v1.yaml").write_text(deployment(True, wave_timeout_s=30))
    hub.cli("apply", "-f", str(tmp_path / "v1.yaml"))

    stop_file = tmp_path / "stop"
    job = FleetJob(
        hub.port,
        hub.ca.read_text(),
        [(str(device.cert_path), str(device.key_path))],
        time.time() + 90,
        str(stop_file),
        0,
        str(tmp_path / "nodes"),
    )
    result: list[FleetStats] = []
    fleet = threading.Thread(target=lambda: result.append(run_fleet(job)), daemon=True)
    fleet.start()
    try:
        # Bounded; the device's stats say why when it does not report a state.
        deadline = time.monotonic() + 60
        while (state := _update_state(hub, device.name)) is None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop_file.touch()
        fleet.join(timeout=60)
    assert result, "the simulated fleet did not stop"
    stats = result[0]
    assert state == "failed", (stats, _device_row(hub, device.name))
    assert stats.applied == [], "a tampered release counted as applied"
    refusals = [kind for kind in stats.errors if kind.startswith("refused:")]
    assert refusals and "digest" in refusals[0], stats.errors
    assert stats.bytes_downloaded >= len(data)  # the bytes came, and were checked
    nodes = tmp_path / "nodes" / "0" / "updater" / "modules" / MODULE
    assert not nodes.exists() or not any(nodes.iterdir()), "the tampered release was installed"
