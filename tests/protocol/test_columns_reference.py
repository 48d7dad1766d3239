"""The fast format-2 decoder against integ10b's (columns_reference.py): the same
records for every batch, the same refusal (message and field) for every
damaged one. The decoder reads whole columns at a time and falls back to the
value-by-value checks only to name a fault; this holds it to every check the
old one made, on thousands of batches damaged at random (fixed seed)."""

import hashlib
import random
from typing import Any

import orjson
import zstandard

from fogline.agent.outbox import OutboxRecord
from fogline.protocol import BatchFormatError, decode_columns, encode_columns
from fogline.protocol._columns import zstd_dictionary
from fogline.protocol._columns_encode import compress_text
from tests.protocol import columns_reference
from tests.support.exact import exact, random_finite_float

LIMIT = 1 << 24
T0 = 1_796_598_690.0
MUTATIONS = 2000


def _summaries(rng: random.Random, count: int, seq0: int = 1) -> list[OutboxRecord]:
    out = []
    for i in range(count):
        readings = [round(rng.gauss(50, 5), 2) for _ in range(100)]
        payload = {
            "sensor": f"s{i % 1000:04d}",
            "window_start": T0 + 10 * (i // 1000),
            "window_end": T0 + 10 * (i // 1000) + 10,
            "count": 100,
            "max": max(readings),
            "mean": sum(readings) / 100,
            "min": min(readings),
        }
        created = T0 + 10.5 + 0.000123 * i
        out.append(
            OutboxRecord(seq0 + i, "summaries", 5, created, created + 86400, orjson.dumps(payload))
        )
    return out


def _anything(rng: random.Random, count: int, seq0: int) -> list[OutboxRecord]:
    out = []
    for i in range(count):
        payload: Any = {
            "value": round(500 + rng.random() * 100, 2),
            "bits": random_finite_float(rng),
            "big": rng.randrange(-(2**63), 2**63),
            "small": rng.randrange(-300, 300),
            "name": rng.choice(["a", "line-7", "", "ü", "07", "s0001"]),
            "nested": {"x": [1, 2.5, None]},
            "zero": -0.0 if i % 2 else 0.0,
        }
        if i % 3 == 0:
            del payload["small"]
            payload = dict(reversed(list(payload.items())))
        if i % 17 == 0:
            payload = [i, "x"]
        created = T0 + rng.random() * 1000
        out.append(
            OutboxRecord(
                seq0 + rng.randrange(1, 1 << 40) * 4 + i % 4 if i % 7 == 0 else seq0 + i,
                rng.choice(["anomalies", "logs/agent"]),
                rng.randrange(10),
                created,
                created + rng.choice([60.0, 86400.0, 0.5]),
                orjson.dumps(payload),
            )
        )
    return out


def _outcome(decode: Any, data: bytes) -> tuple[Any, ...]:
    try:
        records = decode(data, max_decompressed=LIMIT)
    except BatchFormatError as exc:
        return ("refused", str(exc), exc.field)
    return (
        "decoded",
        [
            (r.seq, r.stream, r.priority, exact(r.created), exact(r.expires), exact(r.payload))
            for r in records
        ],
    )


def _text(data: bytes) -> bytes:
    dctx = zstandard.ZstdDecompressor(
        dict_data=zstd_dictionary(), format=zstandard.FORMAT_ZSTD1_MAGICLESS
    )
    with dctx.stream_reader(data) as reader:
        return reader.read(LIMIT)


def test_a_large_random_batch_decodes_as_the_reference_decodes_it() -> None:
    rng = random.Random(11)
    records = _summaries(rng, 2000) + _anything(rng, 1500, 10_000)
    data = encode_columns(records)
    new = _outcome(decode_columns, data)
    assert new[0] == "decoded"
    assert new == _outcome(columns_reference.decode_columns, data)
    assert len(new[1]) == len(records)


_ODD_VALUES: list[Any] = [
    -1, 0, 1, 2, 7, 10, 13, 64, 2**60, 2**60 + 1, 2**62 + 1, -(2**61), 2**63, 1e300, 0.5, -0.0,
    "x", "#", "#1", "", [], [0], [1, 2], [-1], [2**62], [True], {}, {"i": [1]}, None, True,
]  # fmt: skip


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if type(node) is dict:
        for key, value in node.items():
            out += _paths(value, (*path, key))
    elif type(node) is list:
        for i, value in enumerate(node[:8]):
            out += _paths(value, (*path, i))
    return out


def _mutate(rng: random.Random, text: bytes) -> bytes:
    head, nul, tail = text.partition(b"\x00")
    kind = rng.choice([0, 0, 0, 1, 1, 1, 2, 3])
    if kind == 0 or not tail:  # a value of the JSON replaced, or a key dropped
        doc = orjson.loads(head)
        path = rng.choice(_paths(doc)[1:])
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        if type(parent) is dict and rng.random() < 0.2:
            del parent[path[-1]]
        else:
            parent[path[-1]] = rng.choice(_ODD_VALUES)
        return orjson.dumps(doc) + nul + tail
    spot = rng.randrange(len(tail))
    if kind == 1:  # a number changed, mostly where the values still end where they did
        damaged = bytearray(tail)
        high = tail[spot] & 0x80 if rng.random() < 0.8 else rng.choice([0, 0x80])
        damaged[spot] = high | rng.choice([0x00, 0x01, 0x7F, rng.randrange(128)])
        return head + nul + bytes(damaged)
    if kind == 2:  # cut short, or bytes left over
        return head + nul + (tail[:spot] if rng.random() < 0.5 else tail + b"\x01" * (spot % 3 + 1))
    run = bytes([0x80 | rng.randrange(128)] * rng.randrange(1, 12))  # a value too long
    return head + nul + tail[:spot] + run + tail[spot:]


def test_damaged_batches_are_refused_as_the_reference_refuses_them() -> None:
    rng = random.Random(5)
    texts = [
        _text(encode_columns(records))
        for records in (
            _summaries(rng, 70),
            _summaries(rng, 3),
            _anything(rng, 80, 1),
            _anything(rng, 5, 1) + _summaries(rng, 66, 100),
        )
    ]
    refused = 0
    for _ in range(MUTATIONS):
        data = compress_text(_mutate(rng, rng.choice(texts)))
        new = _outcome(decode_columns, data)
        assert new == _outcome(columns_reference.decode_columns, data)
        refused += new[0] == "refused"
    assert refused > MUTATIONS // 2  # the damage is mostly caught, not mostly harmless


# sha256 over the sha256 of each batch below as integ10b's encoder wrote it:
# the encoder may get faster, never write another byte.
INTEG10B_DIGEST = "03ee6feb19c5709cf8eff6c86b740aa0f3c7930511cff48749ad39b1bf500e32"


def test_the_encoder_writes_the_bytes_integ10b_wrote() -> None:
    rng = random.Random(23)
    batches = [
        _summaries(rng, 2000),
        _anything(rng, 700, 1),
        _anything(rng, 5, 1),
        _summaries(rng, 1),
    ]
    digests = b"".join(hashlib.sha256(encode_columns(b)).digest() for b in batches)
    assert hashlib.sha256(digests).hexdigest() == INTEG10B_DIGEST
