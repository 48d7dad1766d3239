"""Values compared bit for bit: floats as their bits, types and key order spelled out."""

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
