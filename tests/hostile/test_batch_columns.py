"""Batch format 2 at a real hub: stored as format 1 would store it, bounded, checked.

(Issue #18, bytes upstream: the uplink sends columns per stream; the hub must
refuse a decompression bomb or a malformed batch with a 4xx naming the field,
never a 500, and store a good one once.)
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from fogline.agent.outbox import OutboxRecord
from fogline.protocol import COLUMNS_MEDIA_TYPE, encode_columns
from fogline.protocol._columns_encode import compress_text
from tests.support.device import enroll_device
from tests.support.processes import HubProcess

if TYPE_CHECKING:  # imported for the annotations only: pytest would collect a Test* class
    from tests.support.device import TestDevice

FORMAT_2 = {"content-type": COLUMNS_MEDIA_TYPE}


@pytest.fixture(scope="module")
def device(
    shared_hub: HubProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestDevice]:
    yield enroll_device(
        shared_hub, shared_hub.create_claim(), "columnar", tmp_path_factory.mktemp("dev")
    )


def _frame(text: bytes) -> bytes:
    return compress_text(text)


def _bits(value: Any) -> Any:
    if isinstance(value, float):
        return struct.pack("<d", value)
    if isinstance(value, dict):
        return [(k, _bits(v)) for k, v in value.items()]
    return (type(value).__name__, value)


def test_a_format_2_batch_is_stored_bit_for_bit_and_once(
    shared_hub: HubProcess, device: TestDevice
) -> None:
    payloads = [
        {"sensor": f"s{i:04d}", "mean": (4981.06 + i) / 100, "n": i, "ok": i % 2 == 0}
        for i in range(40)
    ]
    records = [
        OutboxRecord(i + 1, "columns/e2e", 5, 1.7e9 + i / 7, 1.7e9 + 86400, orjson.dumps(p))
        for i, p in enumerate(payloads)
    ]
    body = encode_columns(records)
    with device.client() as client:
        first = client.post("/v1/telemetry", content=body, headers=FORMAT_2)
        again = client.post("/v1/telemetry", content=body, headers=FORMAT_2)
    assert first.status_code == again.status_code == 200, first.text
    assert COLUMNS_MEDIA_TYPE in first.headers["accept-post"]
    with shared_hub.client() as client:
        rows = client.get(
            "/v1/telemetry",
            params={"device": "columnar", "stream": "columns/e2e", "since": "30000d"},
        ).json()
    assert [row["seq"] for row in rows] == list(range(1, 41))  # once each
    assert [_bits(row["payload"]) for row in rows] == [_bits(p) for p in payloads]


def test_a_decompression_bomb_in_format_2_is_a_422_and_the_hub_carries_on(
    device: TestDevice,
) -> None:
    bomb = _frame(b'{"v":2,"groups":[],"pad":"' + b"x" * (17 * 1024 * 1024) + b'"}')
    assert len(bomb) < 4096
    with device.client() as client:
        response = client.post("/v1/telemetry", content=bomb, headers=FORMAT_2)
        assert response.status_code == 422, response.text
        assert "decompresses to more than" in response.text
        sane = encode_columns([OutboxRecord(1, "bomb/after", 5, 1.7e9, 1.7e9 + 60, b"{}")])
        assert client.post("/v1/telemetry", content=sane, headers=FORMAT_2).status_code == 200


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (b'{"v":2,"groups":[{"stream":"a b","n":0}]}', "groups.0.stream"),
        (
            b'{"v":2,"groups":[{"stream":"s","n":1,"seq":[1],"priority":[5],'
            b'"created":{"e":0,"m":{"i":[2305843009213693952]}},'
            b'"expires":{"e":0,"m":{"i":[0]},"rel":true},"payload":{"j":[{}]}}]}',
            "groups.0.created.m",
        ),
        (b'{"records":[]}', "v"),  # format 1's body under format 2's name
    ],
)
def test_a_malformed_format_2_batch_is_a_422_naming_the_field(
    device: TestDevice, text: bytes, field: str
) -> None:
    with device.client() as client:
        response = client.post("/v1/telemetry", content=_frame(text), headers=FORMAT_2)
    assert response.status_code == 422, response.text
    assert [d["field"] for d in response.json()["details"]] == [field]
