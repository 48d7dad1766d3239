"""Values compared bit for bit (floats as their bits, types and key order
spelled out), and payloads that make a codec earn that."""

import math
import random
import struct
from typing import Any


def exact(value: Any) -> Any:
    """A value with its floats as their bits, its types and key order spelled out
    (== says 0.0 is -0.0, 1 is 1.0 and {a, b} is {b, a}; this does not)."""
    if isinstance(value, float):
        return ("float", struct.pack("<d", value))
    if isinstance(value, dict):
        return ("dict", [(k, exact(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [exact(v) for v in value])
    return (type(value).__name__, value)


def random_finite_float(rng: random.Random) -> float:
    """Any finite double, each bit pattern alike (not a uniform number)."""
    while True:
        value: float = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(value):
            return value


def tricky_payload(rng: random.Random, i: int) -> dict[str, Any]:
    """A payload with what codecs get wrong: random bits, subnormals, the
    largest double, -0.0, ints beyond int64, numbered names, nesting, and
    (every fourth) a key missing and the order changed."""
    readings = [round(rng.gauss(50, 5), 2) for _ in range(100)]
    payload: dict[str, Any] = {
        "sensor": f"s{i % 37:04d}",
        "mean": sum(readings) / len(readings),  # a float a step or two off a decimal
        "max": max(readings),
        "bits": random_finite_float(rng),
        "tiny": [5e-324, 1e-310, 2.2250738585072014e-308][i % 3],
        "huge": 1.7976931348623157e308 if i % 2 else -1.5e300,
        "zero": -0.0 if i % 2 else 0.0,
        "count": rng.randrange(-(2**63), 2**64) if i % 5 == 0 else i,
        "flag": i % 3 == 0,
        "name": rng.choice(["a", "line-7", "", "ü", "07"]),
        "nested": {"x": [1, 2.5, None], "y": {"z": "w"}},
        "nothing": None,
    }
    if i % 4 == 0:
        del payload["tiny"]
        payload = dict(reversed(list(payload.items())))
    return payload
