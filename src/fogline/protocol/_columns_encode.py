"""Batch format 2, the encoder: records into columns, the numbers moved after
the text (the format itself: _columns.py)."""

import datetime as dt
import itertools
import math
import operator
import struct
from collections.abc import Sequence
from typing import Any, Final

import orjson
import zstandard

from ._columns import (
    ALL_MARK,
    COLUMNS_VERSION,
    COLUMNS_ZSTD_LEVEL,
    DIGITS,
    EPOCH,
    FEW_ULPS,
    FLOAT64,
    INT_LISTS,
    MAGNITUDE,
    MAX_DECIMALS,
    MAX_DIGITS,
    MAX_PREFIX,
    MAX_ULPS,
    MAX_VALUE,
    MICROSECOND,
    ONE_MARK,
    OPAQUE,
    PACK_MIN,
    POW10,
    SHARED_LISTS,
    read_int_column,
    zstd_dictionary,
)
from ._telemetry import (
    BatchFormatError,
    EncodableRecord,
)

_FLOAT: Final = {float}
_INT: Final = {int}
_STR: Final = {str}
# Packed widths as struct codes: 3, 5, 6 and 7 bytes pack as the next one up.
_PACK_CODES: Final = ((1, "B"), (2, "H"), (4, "I"), (8, "Q"))
# Values of a float column an e is tried on before the whole column.
_SAMPLE: Final = 16


def encode_columns(records: Sequence[EncodableRecord]) -> bytes:
    """Serialise and compress a batch in format 2 (see the module docstring).

    Unlike format 1 this parses each payload once, to split it into columns.

    Raises:
        BatchFormatError: a payload is not JSON or a field cannot be serialised
            (the caller can still send format 1, which embeds payload bytes as
            they are).
    """
    groups: dict[str, list[EncodableRecord]] = {}
    for r in records:
        if not 1 <= r.seq <= MAX_VALUE:
            raise BatchFormatError(f"record {r.seq}: seq beyond what format 2 carries")
        groups.setdefault(r.stream, []).append(r)
    body: dict[str, Any] = {
        "v": COLUMNS_VERSION,
        "groups": [_encode_group(s, g) for s, g in groups.items()],
    }
    tail = bytearray()
    _lift(body, tail)
    try:
        text = orjson.dumps(body)
    except orjson.JSONEncodeError as exc:
        raise BatchFormatError(f"cannot encode the batch: {exc}") from exc
    if tail:  # JSON text holds no NUL byte: the first one ends it
        text += b"\x00" + tail
    return compress_text(text)


def compress_text(text: bytes) -> bytes:
    """Compress a format-2 text as `encode_columns` does (tests make odd batches with it).

    Level 19 from the dictionary, and no magic number, checksum, dictionary
    id or content size: 10 bytes of every frame that the media type, TLS and
    the decoder's bounds make redundant, on batches of five anomalies that
    are a hundred bytes in all.
    """
    params = zstandard.ZstdCompressionParameters.from_level(
        COLUMNS_ZSTD_LEVEL,
        source_size=len(text),
        format=zstandard.FORMAT_ZSTD1_MAGICLESS,
        write_checksum=0,
        write_dict_id=0,
        write_content_size=0,
    )
    compressor = zstandard.ZstdCompressor(compression_params=params, dict_data=zstd_dictionary())
    return compressor.compress(text)


def _lift(node: Any, tail: bytearray) -> None:
    """Move every int list (as varints) and the bytes of every packed column
    out of the text, in document order, into `tail`.

    What is left is the same for every batch of a stream but for `n` and a
    few exponents, so zstd copies it from the dictionary in a few long
    matches, and the numbers cost bytes rather than digits: a batch of five
    anomalies costs about its numbers.
    """
    if type(node) is list:
        for item in node:
            _lift(item, tail)
    elif type(node) is dict:
        for key, value in node.items():
            if key in INT_LISTS and type(value) is list:
                _put_varints(tail, value)
                # "#1" only where one value stands for all (priority, shape):
                # elsewhere one value is a group of one, written like any n.
                node[key] = ONE_MARK if len(value) == 1 and key in SHARED_LISTS else ALL_MARK
            elif key == "p" and type(value) is bytes:
                tail += value
                node[key] = ALL_MARK
            elif key not in OPAQUE:
                _lift(value, tail)


def _put_varints(out: bytearray, values: list[int]) -> None:
    """Zigzag, then 7 bits a byte, low first (protobuf's sint64); a list of
    small values (differences of counters) in one call."""
    zigzag = [v << 1 if v >= 0 else (~v << 1) | 1 for v in values]
    if not zigzag or max(zigzag) <= 0x7F:
        out += bytes(zigzag)
        return
    for v in zigzag:
        while v > 0x7F:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)


def _encode_group(stream: str, group: list[EncodableRecord]) -> dict[str, Any]:
    payloads: list[Any] = []
    for r in group:
        try:
            payloads.append(orjson.loads(r.payload))
        except orjson.JSONDecodeError as exc:
            raise BatchFormatError(f"record {r.seq}: payload is not JSON: {exc}") from exc
    # A window's records share their times: convert each distinct one once.
    times: dict[float, float] = {}
    for r in group:
        for t in (r.created, r.expires):
            if t not in times:
                times[t] = to_microsecond(t)
    created = _float_column([times[r.created] for r in group])
    priorities = [r.priority for r in group]
    return {
        "stream": stream,
        "n": len(group),
        "seq": _deltas([r.seq for r in group]),
        "priority": priorities[:1] if len(set(priorities)) == 1 else priorities,
        "created": created,
        "expires": _float_column([times[r.expires] for r in group], base=created),
        "payload": _payload_columns(payloads),
    }


def to_microsecond(seconds: float) -> float:
    """A record time at the hub's precision: the float of the microsecond the
    hub stores for `seconds`, if that float stores as the same microsecond
    (any time before the year 2106); else `seconds` itself.

    The hub keeps `created` as a datetime, to the microsecond, and does not
    keep `expires`: the digits below a microsecond (time.time() has about
    three more, and the steps to make them exact) would cost a format-2 batch
    two bytes a record for nothing the hub stores.
    """
    try:
        stamp = dt.datetime.fromtimestamp(seconds, dt.UTC)
        rounded = (stamp - EPOCH) // MICROSECOND / 1_000_000
        if dt.datetime.fromtimestamp(rounded, dt.UTC) == stamp:
            return rounded
    except (OverflowError, OSError, ValueError):
        pass
    return seconds


def _payload_columns(payloads: list[Any]) -> dict[str, Any]:
    if not all(type(p) is dict for p in payloads):
        return {"j": payloads}
    keys = list(map(tuple, payloads))
    if len(set(keys)) == 1:  # one shape (summaries, anomalies): columns by zip
        return {
            "keys": [list(keys[0])],
            "shape": [0],
            "cols": {
                key: _column(list(column))
                for key, column in zip(
                    keys[0], zip(*(p.values() for p in payloads), strict=True), strict=True
                )
            },
        }
    shapes: dict[tuple[str, ...], int] = {}
    shape: list[int] = []
    values: dict[str, list[Any]] = {}
    for p in payloads:
        shape.append(shapes.setdefault(tuple(p), len(shapes)))
        for key, value in p.items():
            values.setdefault(key, []).append(value)
    return {
        "keys": [list(k) for k in shapes],
        "shape": shape[:1] if len(shapes) == 1 else shape,
        "cols": {key: _column(column) for key, column in values.items()},
    }


def _column(values: list[Any]) -> dict[str, Any]:
    # One number or numbered name alone travels like many (a column in
    # the tail), so a batch of one anomaly has the dictionary's form.
    types = set(map(type, values))
    if _all_the_same(values, types) and not (len(values) == 1 and _is_numbered(values[0])):
        return {"c": values[0]}
    if types == _FLOAT:
        return _float_column(values)
    if types == _INT and min(values) >= -MAX_VALUE and max(values) <= MAX_VALUE:
        return _int_column(values)
    if types == _STR:
        split = [_numbered(v) for v in values]
        if all(split):
            parts = [p for p in split if p is not None]
            prefix, digits = parts[0][0], len(parts[0][1])
            if all(p == prefix and len(d) == digits for p, d in parts):
                numbers = _int_column([int(d) for _, d in parts])
                return {"prefix": prefix, "digits": digits, "n": numbers}
    return {"j": values}


def _numbered(name: str) -> tuple[str, str] | None:
    """(prefix, digits) of a numbered name: at most 17 ASCII digits at the end
    (beyond that, the earlier ones join the prefix), a prefix of at most 64."""
    head = name.rstrip(DIGITS)
    run = len(name) - len(head)
    if run == 0:
        return None
    cut = len(name) - min(run, MAX_DIGITS)
    return (name[:cut], name[cut:]) if cut <= MAX_PREFIX else None


def _is_numbered(value: Any) -> bool:
    """A number, or a numbered name (`s0042`): a column even when it is one."""
    return type(value) in (int, float) or (type(value) is str and _numbered(value) is not None)


def _all_the_same(values: list[Any], types: set[type]) -> bool:
    """Whether every value is the first, type and bits alike (-0.0 is not 0.0,
    1 is not 1.0, also inside lists and objects, where == says they are);
    `types` is the set of their types."""
    first = values[0]
    if len(types) != 1:
        return False
    if type(first) in (dict, list):
        text = orjson.dumps(first)
        return all(orjson.dumps(v) == text for v in values)
    if type(first) is float:
        return struct.pack(f"<{len(values)}d", *values) == FLOAT64.pack(first) * len(values)
    return values.count(first) == len(values)


def _int_column(values: list[int]) -> dict[str, Any]:
    """Integers within MAX_VALUE, as differences in JSON or packed, whichever is smaller.

    Packed: each value minus the smallest, in `w` little-endian bytes, all
    first bytes then all second bytes (the high bytes, nearly constant, then
    compress to nothing); `_lift` moves the bytes after the text. Random
    readings pack to about a fifth fewer bytes than their digits; counters
    and sequences are cheaper as differences.
    """
    deltas: dict[str, Any] = {"i": _deltas(values)}
    if len(values) < PACK_MIN:
        return deltas
    low = min(values)
    offsets = [v - low for v in values]
    width = max(1, (max(offsets).bit_length() + 7) // 8)
    # Little-endian words of the next struct size up, cut into byte planes.
    size, code = next((s, c) for s, c in _PACK_CODES if s >= width)
    words = struct.pack(f"<{len(offsets)}{code}", *offsets)
    planes = b"".join(words[i::size] for i in range(width))
    trial = zstandard.ZstdCompressor(level=1)
    if len(trial.compress(planes)) < len(trial.compress(orjson.dumps(deltas["i"]))):
        return {"lo": low, "w": width, "p": planes}
    return deltas


def _float_column(values: list[float], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A column of floats, as decimals and steps if some e fits every value.

    The fewest decimals whose steps stay within FEW_ULPS win; failing that,
    those with the fewest steps. With `base` (the created column) the
    mantissas are differences from its own, so `expires` (created + ttl)
    costs almost nothing.
    """
    best = _fewest_decimals(values)
    if best is None:
        return {"f": values}
    e, mantissas, ulps = best
    column: dict[str, Any] = {"e": e}
    if base is not None and base.get("e") == e:
        base_m = read_int_column(base["m"], "created.m", len(values))
        column["m"] = _int_column([m - b for m, b in zip(mantissas, base_m, strict=True)])
        column["rel"] = True
    else:
        column["m"] = _int_column(mantissas)
    if any(ulps):
        column["u"] = _int_column(ulps)
    return column


def _fewest_decimals(values: list[float]) -> tuple[int, list[int], list[int]] | None:
    """(e, mantissas, steps) for `_float_column`: the first e whose steps all
    stay within FEW_ULPS, else the e with the fewest steps at worst (the first
    of equals), else None.

    Most e fail on the first value, cheaply. Of the rest, only an e whose
    values are all within FEW_ULPS can be the first answer, so those within
    it on a sample (a few values spread over the column) are tried on the
    whole column first (the times of a batch: 1796598700.500123 fits e = 3
    with 515 steps, e = 6 with none); the others only if none is.
    """
    firsts = [e for e in range(MAX_DECIMALS + 1) if _decimals(values[:1], e)]
    sample = values[:: max(1, len(values) // _SAMPLE)]
    whole: dict[int, tuple[list[int], list[int]] | None] = {}
    for e in firsts:
        tried = _decimals(sample, e)
        if tried is not None and max(map(abs, tried[1])) <= FEW_ULPS:
            coded = whole[e] = _decimals(values, e)
            if coded is not None and max(map(abs, coded[1])) <= FEW_ULPS:
                return (e, *coded)
    # No e within FEW_ULPS for every value: the fewest steps win.
    best: tuple[int, list[int], list[int]] | None = None
    for e in firsts:
        coded = whole[e] if e in whole else _decimals(values, e)
        if coded is None:
            continue
        if best is None or max(map(abs, coded[1])) < max(map(abs, best[2])):
            best = (e, *coded)
    return best


def _decimals(values: list[float], e: int) -> tuple[list[int], list[int]] | None:
    """(mantissas, steps) of `values` as decimals with e places, or None if
    one does not fit (not finite, too large, another sign, too many steps)."""
    scale = POW10[e]
    # Whole columns by C loops (map, min, max); x * scale grows with |x|,
    # so the largest |x| alone decides the bound.
    if not values:
        return [], []
    if not all(map(math.isfinite, values)):
        return None
    if max(map(abs, values)) * scale >= MAX_VALUE:
        return None
    mantissas = list(map(round, map(operator.mul, values, itertools.repeat(scale))))
    # The steps between floats of one sign are the differences of their bit
    # patterns read as integers: packed all at once, not float by float.
    xs = _bits(values)
    ys = _bits(list(map(operator.truediv, mantissas, itertools.repeat(scale))))
    if min(map(operator.xor, xs, ys)) < 0:  # a sign bit differs
        return None
    magnitude = itertools.repeat(MAGNITUDE)
    ulps = list(
        map(operator.sub, map(operator.and_, xs, magnitude), map(operator.and_, ys, magnitude))
    )
    if min(ulps) < -MAX_ULPS or max(ulps) > MAX_ULPS:
        return None
    return mantissas, ulps


def _bits(values: list[float]) -> tuple[int, ...]:
    """Each float's 64 bits as a signed integer (negative: the sign bit is set)."""
    return struct.unpack(f"<{len(values)}q", struct.pack(f"<{len(values)}d", *values))


def _deltas(values: Sequence[int]) -> list[int]:
    return [values[0], *map(operator.sub, values[1:], values[:-1])] if values else []
