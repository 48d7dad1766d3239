"""A compromised device cannot put nonsense into the fleet's health: negative
sizes, NaN, 1e308, ten thousand modules are a 422 naming the field, and
nothing of the report is stored (issue #15, device health)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.device import FACTS, enroll_device
from tests.support.processes import HubProcess

if TYPE_CHECKING:  # imported for the annotations only: pytest would collect a Test* class
    from tests.support.device import TestDevice


@pytest.fixture(scope="module")
def device(
    shared_hub: HubProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestDevice]:
    yield enroll_device(
        shared_hub, shared_hub.create_claim(), "sick-node", tmp_path_factory.mktemp("dev")
    )


def _post(device: TestDevice, health_json: str) -> Any:
    body = f'{{"facts": {json.dumps(FACTS)}, "health": {health_json}}}'
    with device.client() as client:
        return client.post("/v1/report", content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("health", "field"),
    [
        ('{"mem_used_bytes": -1}', "body.health.mem_used_bytes"),
        ('{"cpu_percent": NaN}', "body.health.cpu_percent"),
        ('{"cpu_percent": 1e308}', "body.health.cpu_percent"),
        ('{"load1": Infinity}', "body.health.load1"),
        ('{"temperature_c": 1e308}', "body.health.temperature_c"),
        ('{"temperature_c": -1000}', "body.health.temperature_c"),
        ('{"disk_free_bytes": 1e308}', "body.health.disk_free_bytes"),
        ('{"net_rx_bytes": 99999999999999999999999}', "body.health.net_rx_bytes"),
        ('{"modules": {"m": {"rss_bytes": -5}}}', "body.health.modules.m.rss_bytes"),
        ('{"modules": {"m": {"cpu_percent": 101}}}', "body.health.modules.m.cpu_percent"),
        ('{"modules": {"m": {"restarts": -1}}}', "body.health.modules.m.restarts"),
        ('{"modules": {"m": {"state": 7}}}', "body.health.modules.m.state"),
        ('"lots"', "body.health"),
        ('{"pipeline_errors": -1}', "body.health.pipeline_errors"),
        ('{"pipeline_dropped": 1e30}', "body.health.pipeline_dropped"),
        (
            '{"modules": {"m": {"metrics": {"x_total": NaN}}}}',
            "body.health.modules.m.metrics.x_total",
        ),
        ('{"modules": {"m": {"metrics": {"x": 1e308}}}}', "body.health.modules.m.metrics.x"),
        ('{"modules": {"m": {"metrics": {"x": "7"}}}}', "body.health.modules.m.metrics.x"),
        ('{"modules": {"m": {"metrics": {"a b": 1}}}}', "body.health.modules.m.metrics.a b.[key]"),
    ],
)
def test_an_absurd_health_value_is_a_422_naming_the_field(
    device: TestDevice, health: str, field: str
) -> None:
    response = _post(device, health)
    assert response.status_code == 422, response.text
    fields = [detail["field"] for detail in response.json()["details"]]
    assert field in fields, fields


def test_ten_thousand_modules_are_refused_naming_the_field(device: TestDevice) -> None:
    modules = {f"m{i}": {"state": "healthy", "rss_bytes": 1} for i in range(10_000)}
    response = _post(device, json.dumps({"modules": modules}))
    assert response.status_code == 422, response.text
    assert [d["field"] for d in response.json()["details"]] == ["body.health.modules"]


def test_more_than_16_module_series_are_refused_naming_the_field(device: TestDevice) -> None:
    series = {f"s{i}_total": i for i in range(17)}
    response = _post(device, json.dumps({"modules": {"m": {"metrics": series}}}))
    assert response.status_code == 422, response.text
    assert [d["field"] for d in response.json()["details"]] == ["body.health.modules.m.metrics"]


def test_a_refused_report_stores_nothing(device: TestDevice, shared_hub: HubProcess) -> None:
    assert _post(device, '{"mem_used_bytes": 1024}').status_code == 200
    assert _post(device, '{"mem_used_bytes": -1}').status_code == 422
    assert shared_hub.device(device.device_id)["reported"]["health"]["mem_used_bytes"] == 1024


@pytest.mark.parametrize(
    ("outbox", "field"),
    [
        ({"dropped_quota": 2**64}, "body.outbox.dropped_quota"),
        ({"expired": 99999999999999999999999}, "body.outbox.expired"),
        ({"dead_lettered": 2**63}, "body.outbox.dead_lettered"),
        ({"dropped_by_priority": {"5": 2**64}}, "body.outbox.dropped_by_priority.5"),
    ],
)
def test_a_count_past_what_json_keeps_exact_is_a_422_not_a_database_error(
    device: TestDevice, outbox: dict[str, Any], field: str
) -> None:
    """Found by the API fuzz test: counts the hub sums into a 64-bit column
    reached the database driver and came back as a 500."""
    body = {"facts": FACTS, "outbox": {"depth": 0, "bytes": 0, "max_bytes": 0, **outbox}}
    with device.client() as client:
        response = client.post("/v1/report", json=body)
    assert response.status_code == 422, response.text
    assert field in [detail["field"] for detail in response.json()["details"]], response.text
    with device.client() as client:  # the node's next sane report is taken
        sane = {
            "facts": FACTS,
            "outbox": {"depth": 0, "bytes": 0, "max_bytes": 0, "expired": 2**53},
        }
        assert client.post("/v1/report", json=sane).status_code == 200
