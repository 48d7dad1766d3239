"""A telemetry batch posted twice (its acknowledgement lost) is stored once,
acknowledged both times, and counted as duplicates, on SQLite and PostgreSQL."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.device import enroll_device, telemetry_batch
from tests.support.processes import HubProcess, start_hub


@pytest.fixture
def hub_on(db_url: str, tmp_path: Path) -> Iterator[HubProcess]:
    """A hub on SQLite, then on PostgreSQL (the `db_url` fixture's two params)."""
    hub = start_hub(tmp_path / "hub", db_url=db_url)
    try:
        yield hub
    finally:
        hub.stop()


def _stored(hub: HubProcess) -> list[tuple[int, object]]:
    with hub.client() as client:
        response = client.get("/v1/telemetry", params={"stream": "readings", "limit": 100})
    assert response.status_code == 200, response.text
    return sorted((row["seq"], row["payload"]) for row in response.json())


def test_the_same_batch_twice_is_stored_once_and_acknowledged_twice(
    hub_on: HubProcess, tmp_path: Path
) -> None:
    hub = hub_on
    device = enroll_device(hub, hub.create_claim(), "resender", tmp_path)
    body = telemetry_batch([(seq, "readings", {"n": seq}) for seq in range(1, 6)])

    for _ in range(2):  # the second post is the resend after a lost acknowledgement
        response = device.post_telemetry(body)
        assert (response.status_code, response.json()) == (200, {"received": 5})

    assert _stored(hub) == [(seq, {"n": seq}) for seq in range(1, 6)]
    assert hub.metric("fogline_hub_telemetry_records_total") == 10
    assert hub.metric("fogline_hub_telemetry_duplicates_total") == 5

    # A batch overlapping what is stored: the new records are kept, the others counted.
    overlapping = telemetry_batch([(seq, "readings", {"n": seq}) for seq in range(4, 9)])
    response = device.post_telemetry(overlapping)
    assert (response.status_code, response.json()) == (200, {"received": 5})
    assert _stored(hub) == [(seq, {"n": seq}) for seq in range(1, 9)]
    assert hub.metric("fogline_hub_telemetry_duplicates_total") == 7
