"""Hostile cases for the hub's quarantine (hub/_self_healing.py) against a
real hub: only an operator whose role may label, and whose scope holds the
device, lifts a quarantine; a viewer reads insights but changes nothing."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

import pytest

from tests.support.device import enroll_device
from tests.support.people import as_token, user_with_token
from tests.support.processes import HubProcess, start_hub

QUARANTINED = "fogline.dev/quarantined"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A hub with a quarantined device in Berlin and one in Paris."""
    root = tmp_path_factory.mktemp("quarantine")
    hub = start_hub(root / "hub")
    try:
        for site in ("berlin", "paris"):
            enroll_device(hub, hub.create_claim(labels=f"site={site}"), f"{site}-1", root)
        # As the hub's pass leaves them (tests/hub/test_self_healing_e2e.py
        # drives the pass itself): the label in the hub-owned column.
        with sqlite3.connect(root / "hub" / "hub.db") as db:
            db.execute(
                "UPDATE devices SET platform_labels = json_set(platform_labels, ?, 'true')",
                (f'$."{QUARANTINED}"',),
            )
        yield hub
    finally:
        hub.stop()


def test_a_scoped_operator_cannot_lift_a_quarantine_outside_its_selector(
    fleet: HubProcess,
) -> None:
    token = user_with_token(fleet, "op-berlin", "operator", {"site": "berlin"})
    with as_token(fleet, token) as client:
        outside = client.post("/v1/devices/paris-1/unquarantine")
        assert outside.status_code == 403, outside.text
        assert "outside that selector" in outside.json()["message"]
        inside = client.post("/v1/devices/berlin-1/unquarantine")
        assert inside.status_code == 200, inside.text
    assert fleet.device("paris-1")["labels"][QUARANTINED] == "true"
    assert QUARANTINED not in fleet.device("berlin-1")["labels"]


def test_a_viewer_reads_insights_but_cannot_lift_a_quarantine(fleet: HubProcess) -> None:
    token = user_with_token(fleet, "watcher", "viewer", None)
    with as_token(fleet, token) as client:
        assert set(client.get("/v1/insights").json()) == {
            "forecasts",
            "anomalies",
            "groups",
            "actions",
        }
        refused = client.post("/v1/devices/paris-1/unquarantine")
    assert refused.status_code == 403, refused.text
    assert fleet.device("paris-1")["labels"][QUARANTINED] == "true"
    # The CLI says so in one line, exit 1.
    result = fleet.cli("devices", "unquarantine", "nobody", check=False)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert json.loads(fleet.cli("insights", "ls", "-o", "json").stdout)["groups"] == []
