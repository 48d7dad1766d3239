"""Batch format 2 (columns per stream): exact round trips and bounded, checked decoding."""

import datetime as dt
import random
import struct
from typing import Any

import orjson
import pytest

from fogline.agent.outbox import OutboxRecord
from fogline.protocol import (
    BatchFormatError,
    decode_batch,
    decode_columns,
    encode_batch,
    encode_columns,
)
from fogline.protocol._columns_encode import compress_text
from tests.support.exact import exact, tricky_payload

LIMIT = 1 << 24


def _record(seq: int, payload: Any, *, stream: str = "s", created: float = 1.7e9) -> OutboxRecord:
    return OutboxRecord(seq, stream, 5, created, created + 86400.0, orjson.dumps(payload))


def _as_stored(records: list[Any]) -> list[Any]:
    """What the hub keeps of each record: times as datetimes (to the microsecond)."""
    return sorted(
        (
            (r.seq, r.stream, r.priority, _stamp(r.created), _stamp(r.expires), exact(r.payload))
            for r in records
        ),
        key=lambda row: row[0],
    )


def _stamp(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _tricky_payloads(count: int) -> list[Any]:
    rng = random.Random(18)
    return [tricky_payload(rng, i) for i in range(count)]


def test_every_value_comes_back_bit_for_bit_with_its_type_and_key_order() -> None:
    records = [
        _record(i + 1, p, created=1.7e9 + i * 0.123456789)
        for i, p in enumerate(_tricky_payloads(300))
    ]
    records += [
        _record(400 + i, p, stream="other")
        for i, p in enumerate([[1, 2], "text", 3.25, None, {"a": 1}])
    ]
    decoded = decode_columns(encode_columns(records), max_decompressed=LIMIT)
    via_format_1 = decode_batch(encode_batch(records), max_decompressed=LIMIT)
    assert _as_stored(decoded) == _as_stored(via_format_1)
    assert [list(r.payload) for r in decoded[:5]] == [
        list(orjson.loads(r.payload)) for r in records[:5]
    ]


@pytest.mark.parametrize(
    "values",
    [
        [49.81059999999999, 50.19879999999999, 0.1 + 0.2],
        [1e-300, 1e300, -2.5],
        [0.0, -0.0, 5e-324],
        [1796598697.4626813, 1796598697.4626820],
        [float(2**60), float(2**61) + 1024.0],
    ],
)
def test_float_columns_areexact(values: list[float]) -> None:
    records = [_record(i + 1, {"v": v}) for i, v in enumerate(values * 5)]
    decoded = decode_columns(encode_columns(records), max_decompressed=LIMIT)
    assert [struct.pack("<d", r.payload["v"]) for r in decoded] == [
        struct.pack("<d", v) for v in values * 5
    ]


def test_summaries_cost_well_under_format_1() -> None:
    rng = random.Random(7)
    records = []
    for i in range(500):
        readings = [round(rng.gauss(50, 5), 2) for _ in range(100)]
        payload = {
            "sensor": f"s{i:04d}",
            "window_start": 1.7e9,
            "window_end": 1.7e9 + 10,
            "count": 100,
            "max": max(readings),
            "mean": sum(readings) / 100,
            "min": min(readings),
        }
        records.append(_record(i + 1, payload))
    assert len(encode_columns(records)) < 0.5 * len(encode_batch(records))


def test_a_seq_beyond_format_2_is_refused_by_the_encoder_so_format_1_carries_it() -> None:
    with pytest.raises(BatchFormatError):
        encode_columns([_record(2**61, {"v": 1})])


TAIL = "tail"  # in a test body: the bytes to put after the text


def _frame(body: Any) -> bytes:
    if isinstance(body, dict) and TAIL in body:
        body = dict(body)
        tail = body.pop(TAIL)
        return compress_text(orjson.dumps(body) + b"\x00" + tail)
    return compress_text(orjson.dumps(body))


def _group(**changes: Any) -> dict[str, Any]:
    group: dict[str, Any] = {
        "stream": "s",
        "n": 2,
        "seq": [1, 1],
        "priority": [5],
        "created": {"e": 0, "m": {"i": [1700000000, 0]}},
        "expires": {"e": 0, "m": {"i": [86400, 0]}, "rel": True},
        "payload": {"keys": [["v"]], "shape": [0], "cols": {"v": {"i": [1, 1]}}},
    }
    group.update(changes)
    return group


def test_a_hand_made_batch_decodes() -> None:
    [a, b] = decode_columns(_frame({"v": 2, "groups": [_group()]}), max_decompressed=LIMIT)
    assert (a.seq, a.created, a.expires, a.payload) == (1, 1.7e9, 1.7e9 + 86400, {"v": 1})
    assert (b.seq, b.payload) == (2, {"v": 2})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"v": 3, "groups": []}, "v"),
        ({"v": 2, "groups": [_group(seq="#")], TAIL: b"\x02\x80"}, "data"),  # cut short
        ({"v": 2, "groups": [_group(seq="#")], TAIL: b"\x02" + b"\xff" * 10}, "data"),  # too long
        ({"v": 2, "groups": [_group()], TAIL: b"\x02"}, "data"),  # a byte left over
        ({"v": 2, "groups": [_group(seq="#")], TAIL: b"\x02"}, "data"),  # n above the bytes
        ({"v": 2, "groups": [_group(stream="bad stream")]}, "groups.0.stream"),
        ({"v": 2, "groups": [_group(seq=[1])]}, "groups.0.seq"),
        ({"v": 2, "groups": [_group(seq=[1, 0])]}, "groups"),  # the same seq twice
        ({"v": 2, "groups": [_group(seq=[0, 1])]}, "groups.0.seq"),
        ({"v": 2, "groups": [_group(priority=[10])]}, "groups.0.priority"),
        ({"v": 2, "groups": [_group(created={"e": 0, "m": {"i": [-5, 0]}})]}, "groups.0.created"),
        ({"v": 2, "groups": [_group(created={"e": 99, "m": {"i": [1, 0]}})]}, "groups.0.created.e"),
        (
            {"v": 2, "groups": [_group(created={"e": 0, "m": {"i": [2**62, 2**62]}})]},
            "groups.0.created.m",
        ),
        (
            {
                "v": 2,
                "groups": [_group(created={"e": 0, "m": {"i": [1, 0]}, "u": {"i": [2**20, 0]}})],
            },
            "groups.0.created",
        ),
        (
            {"v": 2, "groups": [_group(created={"e": 0, "m": {"lo": 0, "w": 9, "p": ""}})]},
            "groups.0.created.m",
        ),
        (
            {"v": 2, "groups": [_group(created={"e": 0, "m": {"lo": 0, "w": 1, "p": "!!!!"}})]},
            "groups.0.created.m",
        ),
        (
            {"v": 2, "groups": [_group(payload={"keys": [["v", "v"]], "shape": [0], "cols": {}})]},
            "groups.0.payload.keys",
        ),
        (
            {"v": 2, "groups": [_group(payload={"keys": [["v"]], "shape": [3], "cols": {}})]},
            "groups.0.payload.shape",
        ),
        (
            {"v": 2, "groups": [_group(payload={"keys": [["v"]], "shape": [0], "cols": {}})]},
            "groups.0.payload.cols",
        ),
        (
            {
                "v": 2,
                "groups": [
                    _group(
                        payload={"keys": [["v"]], "shape": [0], "cols": {"v": {"f": [1.0, "x"]}}}
                    )
                ],
            },
            "groups.0.payload.cols.v.f",
        ),
        (
            {
                "v": 2,
                "groups": [
                    _group(
                        payload={
                            "keys": [["v"]],
                            "shape": [0],
                            "cols": {"v": {"prefix": "s", "digits": 2, "n": {"i": [100, 0]}}},
                        }
                    )
                ],
            },
            "groups.0.payload.cols.v.n",
        ),
        ({"v": 2, "groups": [_group(payload={"j": [1]})]}, "groups.0.payload.j"),
        ({"v": 2, "groups": "x"}, "groups"),
        ([], "batch"),
    ],
)
def test_a_malformed_batch_is_refused_naming_the_field(body: Any, field: str) -> None:
    with pytest.raises(BatchFormatError) as caught:
        decode_columns(_frame(body), max_decompressed=LIMIT)
    assert caught.value.field == field, str(caught.value)


def test_a_decompression_bomb_is_refused_before_it_is_read_whole() -> None:
    bomb = _frame({"v": 2, "groups": [], "pad": "x" * (8 * 1024 * 1024)})
    assert len(bomb) < 2048
    with pytest.raises(BatchFormatError, match="more than 1048576 bytes"):
        decode_columns(bomb, max_decompressed=1 << 20)


def test_a_format_1_batch_or_garbage_is_not_read_as_format_2() -> None:
    for data in (encode_batch([_record(1, {"v": 1})]), b"not zstd at all"):
        with pytest.raises(BatchFormatError):
            decode_columns(data, max_decompressed=LIMIT)


def test_record_times_travel_at_the_hubs_precision_and_store_the_same() -> None:
    """The hub keeps `created` to the microsecond: format 2 drops the digits
    below it, and the hub stores the same datetime as from format 1."""
    rng = random.Random(3)
    times = (
        [1796598697.4626813] + [1.8e9 + rng.random() for _ in range(200)] + [1e9, 0.0, 4e9 + 1e-3]
    )
    records = [_record(i + 1, {"v": i}, created=t) for i, t in enumerate(times)]
    decoded = decode_columns(encode_columns(records), max_decompressed=LIMIT)
    assert [_stamp(r.created) for r in decoded] == [_stamp(t) for t in times]
    assert [_stamp(r.expires) for r in decoded] == [_stamp(t + 86400.0) for t in times]
    assert decoded[0].created == 1796598697.462681


@pytest.mark.parametrize(
    ("planes", "field"),
    [
        (b"\x01\x02", None),  # two values of one byte: 1 + 1, 1 + 2
        (b"\x01", "data"),  # fewer bytes than n x w
        (b"\x01\x02\x03", "data"),  # one left over
    ],
)
def test_packed_bytes_after_the_text_are_counted_to_the_byte(
    planes: bytes, field: str | None
) -> None:
    group = _group(
        payload={"keys": [["v"]], "shape": [0], "cols": {"v": {"lo": 1, "w": 1, "p": "#"}}}
    )
    data = compress_text(orjson.dumps({"v": 2, "groups": [group]}) + b"\x00" + planes)
    if field is None:
        assert [r.payload for r in decode_columns(data, max_decompressed=LIMIT)] == [
            {"v": 2},
            {"v": 3},
        ]
        return
    with pytest.raises(BatchFormatError) as caught:
        decode_columns(data, max_decompressed=LIMIT)
    assert caught.value.field == field
