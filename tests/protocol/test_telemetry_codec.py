"""The batch wire format: round trip, and a hub-side decoder that refuses hostile input."""

import orjson
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from fogline.agent.outbox import OutboxRecord
from fogline.agent.uplink import BatchFormatError, BatchRecord, decode_batch, encode_batch

LIMIT = 1_000_000


def rec(seq: int, payload: object = None, **kw: object) -> OutboxRecord:
    fields: dict[str, object] = {
        "seq": seq,
        "stream": "line1/temp",
        "priority": 5,
        "created": 1700000000.25,
        "expires": 1700086400.25,
        "payload": orjson.dumps({"seq": seq} if payload is None else payload),
    }
    fields.update(kw)
    return OutboxRecord(**fields)  # type: ignore[arg-type]


def compress(obj: object) -> bytes:
    return zstandard.ZstdCompressor().compress(orjson.dumps(obj))


def wire(**overrides: object) -> dict[str, object]:
    record: dict[str, object] = {
        "seq": 1,
        "stream": "s",
        "priority": 1,
        "created": 1.0,
        "expires": 2.0,
        "payload": {},
    }
    record.update(overrides)
    return record


def test_a_batch_round_trips_with_payloads_embedded_as_json() -> None:
    records = [rec(1), rec(2, payload=[1, 2.5, "x"], priority=9), rec(3, payload="text")]
    data = encode_batch(records)
    text = zstandard.ZstdDecompressor().decompress(data)
    assert b'"payload":{"seq":1}' in text  # a JSON value, not base64
    assert set(orjson.loads(text)) == {"records"}
    assert decode_batch(data, max_decompressed=LIMIT) == [
        BatchRecord(1, "line1/temp", 5, 1700000000.25, 1700086400.25, {"seq": 1}),
        BatchRecord(2, "line1/temp", 9, 1700000000.25, 1700086400.25, [1, 2.5, "x"]),
        BatchRecord(3, "line1/temp", 5, 1700000000.25, 1700086400.25, "text"),
    ]


def test_an_empty_batch_round_trips() -> None:
    assert decode_batch(encode_batch([]), max_decompressed=LIMIT) == []


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None)
@given(payloads=st.lists(json_values, max_size=10))
def test_any_json_payloads_round_trip(payloads: list[object]) -> None:
    records = [rec(i + 1, payload=p) for i, p in enumerate(payloads)]
    decoded = decode_batch(encode_batch(records), max_decompressed=LIMIT)
    assert [r.payload for r in decoded] == [orjson.loads(r.payload) for r in records]


def test_a_zstd_bomb_is_refused_without_inflating_it() -> None:
    bomb = zstandard.ZstdCompressor(level=19).compress(b"[" + b" " * 200_000_000 + b"]")
    assert len(bomb) < 100_000
    with pytest.raises(BatchFormatError, match="more than 1000000 bytes"):
        decode_batch(bomb, max_decompressed=LIMIT)


def test_the_bound_is_exact() -> None:
    data = encode_batch([rec(1)])
    size = len(zstandard.ZstdDecompressor().decompress(data))
    assert decode_batch(data, max_decompressed=size)
    with pytest.raises(BatchFormatError, match="more than"):
        decode_batch(data, max_decompressed=size - 1)


def test_concatenated_frames_count_against_the_bound_together() -> None:
    frame = zstandard.ZstdCompressor().compress(b" " * 600_000)
    with pytest.raises(BatchFormatError, match="more than"):
        decode_batch(frame + frame, max_decompressed=LIMIT)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "not JSON"),
        (b"plain bytes, not zstd", "not zstd"),
        (encode_batch([rec(1)])[:-6], "not JSON"),  # truncated in transit
        (zstandard.ZstdCompressor().compress(b"{not json"), "not JSON"),
        (compress([]), "batch"),
        (compress({"records": [wire(seq=0)]}), r"records\.0\.seq"),
        (compress({"records": [wire(seq=True)]}), r"records\.0\.seq"),
        (compress({"records": [wire(seq="1")]}), r"records\.0\.seq"),
        (compress({"records": [wire(priority=10)]}), "priority"),
        (compress({"records": [wire(stream="")]}), "stream"),
        (compress({"records": [wire(stream="a b")]}), "stream"),
        (compress({"records": [wire(stream="x" * 129)]}), "stream"),
        (compress({"records": [wire(created="1")]}), "created"),
        (compress({"records": [{k: v for k, v in wire().items() if k != "payload"}]}), "payload"),
        (compress({"records": [wire(), wire()]}), "seq 1 appears twice"),
    ],
)
def test_hostile_batches_are_refused_with_the_reason(data: bytes, match: str) -> None:
    with pytest.raises(BatchFormatError, match=match):
        decode_batch(data, max_decompressed=LIMIT)


def test_fields_a_newer_agent_adds_are_ignored_not_refused() -> None:
    # A refused batch is dead-lettered by the uplink: an older hub must take a
    # newer agent's batch, and keeps only what it knows (docs/architecture.md).
    data = compress({"records": [wire(trace_id="t-1")], "node_clock": 1.7e9})
    [record] = decode_batch(data, max_decompressed=LIMIT)
    assert record == BatchRecord(1, "s", 1, 1.0, 2.0, {})


def test_non_finite_times_are_refused() -> None:
    text = b'{"records":[{"seq":1,"stream":"s","priority":1,"created":1e999,"expires":2,"payload":{}}]}'
    with pytest.raises(BatchFormatError):
        decode_batch(zstandard.ZstdCompressor().compress(text), max_decompressed=LIMIT)


def test_the_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_decompressed"):
        decode_batch(encode_batch([]), max_decompressed=0)


def test_a_payload_damaged_on_disk_makes_the_hub_refuse_the_batch() -> None:
    # encode_batch embeds payload bytes without parsing them (the outbox only
    # accepts JSON); bytes damaged since then fail at the hub, which answers
    # 4xx, and the uplink's split isolates the record.
    data = encode_batch([rec(1), OutboxRecord(2, "s", 1, 1.0, 2.0, b'{"trunc')])
    with pytest.raises(BatchFormatError, match="not JSON"):
        decode_batch(data, max_decompressed=LIMIT)


@pytest.mark.parametrize(
    ("created", "expires", "field"),
    [
        (1e20, 1e20, "records.0.created"),
        (-1e12, 1.0, "records.0.created"),
        (1.0, 1e20, "records.0.expires"),
    ],
)
def test_times_outside_the_years_1970_to_9999_are_refused_naming_the_field(
    created: float, expires: float, field: str
) -> None:
    data = encode_batch([OutboxRecord(1, "s", 1, created, expires, b"{}")])
    with pytest.raises(BatchFormatError) as caught:
        decode_batch(data, max_decompressed=LIMIT)
    assert caught.value.field == field
