"""Durations and timestamps far outside any clock are a 422 naming the field,
never a 500 (issue #12: `since=300000000d`, a record `created` at 1e20)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from fogline.agent.outbox import OutboxRecord
from fogline.protocol import encode_batch
from tests.support.device import FACTS, enroll_device
from tests.support.processes import HubProcess

if TYPE_CHECKING:  # imported for the annotations only: pytest would collect a Test* class
    from tests.support.device import TestDevice


@pytest.fixture(scope="module")
def device(
    shared_hub: HubProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestDevice]:
    yield enroll_device(
        shared_hub, shared_hub.create_claim(), "clockless", tmp_path_factory.mktemp("dev")
    )


def _fields(body: dict[str, object]) -> list[object]:
    details = body["details"]
    assert isinstance(details, list)
    return [detail["field"] for detail in details]


@pytest.mark.parametrize(
    ("path", "since"),
    [
        ("/v1/telemetry", "300000000d"),
        ("/v1/telemetry", "999999999d"),
        ("/v1/audit", "300000000d"),
        # valid ISO 8601, but no datetime once in UTC
        ("/v1/audit", "0001-01-01T00:00:00+14:00"),
        ("/v1/audit", "9999-12-31T23:59:59-14:00"),
    ],
)
def test_a_window_beyond_any_datetime_is_a_422_naming_since(
    shared_hub: HubProcess, path: str, since: str
) -> None:
    with shared_hub.client() as client:
        response = client.get(path, params={"since": since})
    assert response.status_code == 422, response.text
    assert _fields(response.json()) == ["since"]


def test_the_longest_window_still_answers(shared_hub: HubProcess) -> None:
    with shared_hub.client() as client:
        assert client.get("/v1/telemetry", params={"since": "36500d"}).status_code == 200


@pytest.mark.parametrize(
    ("created", "expires", "field"),
    [
        (1e20, 1e20 + 60, "records.0.created"),
        (-1e12, 60.0, "records.0.created"),
        (1.7e9, 1e20, "records.0.expires"),
    ],
)
def test_a_record_time_outside_the_years_1970_to_9999_is_a_422_naming_the_field(
    device: TestDevice, created: float, expires: float, field: str
) -> None:
    batch = encode_batch([OutboxRecord(1, "line1/temp", 5, created, expires, b"{}")])
    with device.client() as client:
        response = client.post("/v1/telemetry", content=batch)
    assert response.status_code == 422, response.text
    assert _fields(response.json()) == [field]
    with device.client() as client:  # the hub is fine, and a sane record is stored
        sane = encode_batch([OutboxRecord(1, "line1/temp", 5, 1.7e9, 1.7e9 + 60, b"{}")])
        assert client.post("/v1/telemetry", content=sane).status_code == 200


def test_an_infinite_uptime_is_a_422_naming_the_field(device: TestDevice) -> None:
    # 1e999 is valid JSON and parses as infinity
    body = b'{"facts": {%s, "uptime_s": 1e999}}' % b", ".join(
        b'"%s": "%s"' % (k.encode(), str(v).encode()) for k, v in FACTS.items() if k != "uptime_s"
    )
    with device.client() as client:
        response = client.post(
            "/v1/report", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 422, response.text
    assert _fields(response.json()) == ["body.facts.uptime_s"]


def test_no_request_above_answered_500(shared_hub: HubProcess) -> None:
    assert "request.failed" not in shared_hub.log_path.read_text()
