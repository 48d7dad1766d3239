"""Fleet AIOps against a real hub (hub/_insights.py): a disk filling up,
reported through the device report path, raises the forecast alert (webhook,
/metrics by kind) while the disk still has room; crash loops show in
`fogline insights ls` grouped by the release and site they share; a device
running hotter than its peers is flagged with the metric."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.device import FACTS, TestDevice, enroll_device
from tests.support.processes import FAST_FORECAST_HUB_ARGS, HubProcess, start_hub, wait_until
from tests.support.receivers import Receiver

MIB = 1024 * 1024


def _start(tmp_path: Path, receiver: Receiver, db_url: str | None) -> HubProcess:
    return start_hub(
        tmp_path / "hub",
        db_url=db_url,
        extra_args=[
            *FAST_FORECAST_HUB_ARGS,
            "--alert-webhook",
            receiver.url(),
        ],
    )


def _report(device: TestDevice, health: dict[str, Any], modules: dict[str, Any]) -> None:
    body = {"facts": FACTS, "health": health, "modules": {"modules": modules}}
    with device.client() as client:
        response = client.post("/v1/report", json=body)
    assert response.status_code == 200, response.text


def _active(hub: HubProcess) -> dict[tuple[str, str], dict[str, Any]]:
    with hub.client() as client:
        alerts = client.get("/v1/alerts", params={"active": "true"}).json()
    return {(a["device"], a["kind"]): a for a in alerts}


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_filling_disk_raises_the_forecast_alert_before_it_is_full(
    tmp_path: Path, receiver: Receiver, db: str, request: pytest.FixtureRequest
) -> None:
    db_url = request.getfixturevalue("postgres_url") if db == "postgresql" else None
    hub = _start(tmp_path, receiver, db_url)
    try:
        device = enroll_device(hub, hub.create_claim(), "node-17", tmp_path)
        # 100 MiB, 80 free, 1 MiB less every quarter second: full in 20 s.
        # Each report is the device's real report; the hub stamps its sample.
        raised: dict[str, Any] | None = None
        free_when_raised = 0
        for step in range(70):
            free = (80 - step) * MIB
            _report(device, {"disk_free_bytes": free, "disk_total_bytes": 100 * MIB}, {})
            raised = _active(hub).get(("node-17", "disk-full-forecast"))
            if raised is not None:
                free_when_raised = free
                break
            time.sleep(0.25)  # the pace of the series, not a wait for the hub
        assert raised is not None, "no forecast before the disk was nearly full"
        # Raised with room to spare: more than the disk-low threshold's 10 %.
        assert free_when_raised > 10 * MIB
        assert ("node-17", "disk-low") not in _active(hub)
        assert raised["detail"].startswith("disk full in ~"), raised["detail"]
        data = raised["data"]
        assert data["metric"] == "disk_free_bytes"
        assert data["earliest_s"] <= data["seconds"] <= (data["latest_s"] or float("inf"))
        # About 4 MiB/s over what was left: within a generous margin of the truth.
        assert (
            0.3 * free_when_raised / (4 * MIB) < data["seconds"] < 3 * free_when_raised / (4 * MIB)
        )

        # Through the alert machinery: the CLI, the webhook, /metrics by kind.
        # (Read first: the samples age out of the 30 s window behind them.)
        found = json.loads(hub.cli("insights", "ls", "-o", "json").stdout)
        assert [f["device"] for f in found["forecasts"]] == ["node-17"]
        assert found["forecasts"][0]["kind"] == "disk-full-forecast"
        wait_until(
            lambda: any(
                json.loads(seen.body).get("kind") == "disk-full-forecast" for seen in receiver.seen
            ),
            20,
            "the forecast on the webhook",
        )
        assert hub.metric("fogline_hub_alerts_active", kind="disk-full-forecast") == 1
    finally:
        hub.stop()


def test_crash_loops_are_grouped_and_a_hot_device_is_flagged_against_its_peers(
    tmp_path: Path, receiver: Receiver
) -> None:
    hub = _start(tmp_path, receiver, None)
    try:
        berlin, paris = (
            hub.create_claim(labels="site=berlin"),
            hub.create_claim(labels="site=paris"),
        )
        devices = [enroll_device(hub, berlin, f"ber-{i}", tmp_path) for i in range(3)]
        devices += [enroll_device(hub, paris, f"par-{i}", tmp_path) for i in range(3)]
        temperatures = [45.0, 44.0, 46.0, 45.5, 44.5, 95.0]  # par-2 runs hot
        for i, device in enumerate(devices):
            looping = device.name.startswith("ber")
            version = "2.1.0" if looping else "2.0.0"
            state = "crash-loop" if looping else "healthy"
            modules = {"web": {"name": "web", "version": version, "state": state, "restarts": 5}}
            _report(device, {"temperature_c": temperatures[i]}, modules)

        def grouped() -> list[dict[str, Any]] | None:
            found = json.loads(hub.cli("insights", "ls", "-o", "json").stdout)
            groups = [g for g in found["groups"] if g["kind"] == "crash-loop"]
            return groups if groups and found["anomalies"] else None

        groups = wait_until(grouped, 30, "the crash-loop group and the anomaly")
        assert len(groups) == 1 and groups[0]["count"] == 3
        assert groups[0]["summary"].startswith(
            "crash-loop: 3 devices, all on web@2.1.0, site=berlin"
        )
        assert sorted(groups[0]["devices"]) == ["ber-0", "ber-1", "ber-2"]

        hot = _active(hub)[("par-2", "peer-anomaly")]
        assert hot["detail"].startswith("temperature_c 95 vs median 45.25 of 6 peers")
        assert hot["data"]["anomalies"][0]["metric"] == "temperature_c"
        assert hot["data"]["anomalies"][0]["z"] > 3.5
        assert not [k for k in _active(hub) if k[1] == "peer-anomaly" and k[0] != "par-2"]

        table = hub.cli("insights", "ls", "-o", "table").stdout
        assert "crash-loop: 3 devices, all on web@2.1.0, site=berlin" in table
        assert "peer-anomaly" in table and "par-2" in table

        # The webhook gets the group as one message, not only three alerts.
        wait_until(
            lambda: any(json.loads(s.body).get("group") for s in receiver.seen),
            20,
            "the group on the webhook",
        )
        sent = [json.loads(s.body) for s in receiver.seen if json.loads(s.body).get("group")]
        assert "all on web@2.1.0, site=berlin" in sent[0]["summary"]
    finally:
        hub.stop()
