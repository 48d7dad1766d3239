"""The rollout benchmark's simulated devices run the agent's real updater, so a
rollout they "succeed" was verified and installed: a release whose bytes do not
match its digest, or whose signature no trusted key made, is refused and
reported failed. (Before, such a device downloaded the bytes, threw them away
and reported the module healthy.)"""

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.bench_rollout_scale import (
    MODULE,
    FleetJob,
    FleetStats,
    deployment,
    make_release,
    render_tuf_cost,
    run_fleet,
)
from tests.support.device import enroll_device
from tests.support.processes import HubProcess, start_hub


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    # A hub per test: each pushes its own payload@1.0.0 under the same key name.
    process = start_hub(tmp_path / "hub")
    try:
        yield process
    finally:
        process.stop()


def _device_row(hub: HubProcess, name: str) -> dict[str, Any]:
    with hub.client() as client:
        row: dict[str, Any] = client.get(f"/v1/devices/{name}").raise_for_status().json()
    return row


def _update_state(hub: HubProcess, name: str) -> str | None:
    """The outcome of the device's last update of MODULE, as it reported it."""
    reported = _device_row(hub, name).get("reported") or {}
    update = ((reported.get("modules") or {}).get("updates") or {}).get(MODULE)
    return update.get("state") if update else None


def _tamper_with_bytes(hub: HubProcess, digest: str, work: Path) -> None:
    # A compromised artifact store or mirror: the same length, other bytes.
    stored = next(p for p in hub.data_dir.rglob(digest.split(":", 1)[1][2:]) if p.is_file())
    data = bytearray(stored.read_bytes())
    data[-100] ^= 0xFF
    stored.write_bytes(bytes(data))


def _rotate_the_key(hub: HubProcess, digest: str, work: Path) -> None:
    # The key that signed the release is no longer trusted: its name now
    # holds another key, so the signature the release carries verifies under none.
    other = work / "other-keys"
    other.mkdir()
    manifest = hub.cli("keys", "create", "bench-release", "--dir", str(other)).stdout
    hub.cli("apply", "-f", "-", input_text=manifest)


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [(_tamper_with_bytes, "digest"), (_rotate_the_key, "which is not a trusted key")],
    ids=["wrong-digest", "bad-signature"],
)
def test_a_device_refuses_a_release_it_cannot_verify(
    hub: HubProcess, tmp_path: Path, tamper: Any, reason: str
) -> None:
    digest = make_release(hub, tmp_path, 1)
    tamper(hub, digest, tmp_path)
    device = enroll_device(hub, hub.create_claim(max_uses=1), "bench-untrusted", tmp_path)
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
    assert stats.applied == [], "an unverifiable release counted as applied"
    refusals = [kind for kind in stats.errors if kind.startswith("refused:")]
    assert refusals and reason in refusals[0], stats.errors
    installed = tmp_path / "nodes" / "0" / "updater" / "modules" / MODULE
    assert not installed.exists() or not any(installed.iterdir()), "the release was installed"


def test_the_tuf_comparison_prints_both_paths_and_the_same_run_ratio(
    capsys: pytest.CaptureFixture[str],
) -> None:
    render_tuf_cost(
        [FleetStats(update_s=[1.0, 1.0, 1.0])], [FleetStats(update_s=[1.25, 1.25, 1.25])]
    )
    out = capsys.readouterr().out
    assert "| release keys only | 3 | 1.000 |" in out
    assert "| TUF (ngclient refresh + target) | 3 | 1.250 |" in out
    assert "TUF / release keys only, p50: **1.25x** (+250 ms per device update)" in out
    render_tuf_cost([FleetStats()], [FleetStats(update_s=[1.0])])
    assert "not measured" in capsys.readouterr().out
