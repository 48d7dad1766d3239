"""The format-2 decoder as integ10b had it, before it read whole columns at a
time: the oracle that test_columns_reference.py holds the fast decoder to
(the same records, or the same refusal with the same message and field).
A verbatim copy (its shared readers included); do not edit but to follow a
change of the format itself.
"""

import math
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import zstandard

from fogline.protocol._columns import (
    ALL_MARK,
    COLUMNS_VERSION,
    FINITE_BITS,
    FLOAT64,
    INT_LISTS,
    MAX_DECIMALS,
    MAX_ULPS,
    MAX_VALUE,
    MAX_VARINT,
    MAX_WIDTH,
    ONE_MARK,
    OPAQUE,
    POW10,
    UINT64,
    json_list,
    json_object,
    zstd_dictionary,
)
from fogline.protocol._telemetry import (
    MAX_EPOCH_S,
    MAX_PRIORITY,
    MAX_STREAM_LEN,
    MAX_WINDOW_BYTES,
    MIN_PRIORITY,
    STREAM_RE,
    BatchFormatError,
    BatchRecord,
    _decompress_with,
)

_MAX_ELEMENT = 1 << 62


def undelta(deltas: Sequence[int]) -> list[int]:
    out: list[int] = []
    total = 0
    for d in deltas:
        total += d
        out.append(total)
    return out


# Readers of untrusted columns: the decoder's, and the encoder's when it
# builds a `rel` column on the mantissas it has just written.
def read_int_column(raw: Any, where: str, n: int) -> list[int]:
    """An int column (differences or packed), every value within MAX_VALUE."""
    column = json_object(raw, where)
    if "i" in column:
        values = undelta(int_list(column["i"], f"{where}.i", n))
    else:
        low, width, planes = column.get("lo"), column.get("w"), column.get("p")
        if (
            type(low) is not int
            or abs(low) > MAX_VALUE
            or type(width) is not int
            or not 1 <= width <= MAX_WIDTH
            or type(planes) is not bytes
            or len(planes) != n * width
        ):
            raise BatchFormatError(f"batch: {where}: bad packed column", field=where)
        values = [
            low + int.from_bytes(bytes(planes[i * n + k] for i in range(width)), "little")
            for k in range(n)
        ]
    if any(abs(v) > MAX_VALUE for v in values):
        raise BatchFormatError(f"batch: {where}: value out of range", field=where)
    return values


def int_list(raw: Any, where: str, n: int, *, one: bool = False) -> list[int]:
    values = (
        raw if one and type(raw) is list and len(raw) == 1 and n > 0 else json_list(raw, where, n)
    )
    if not all(type(v) is int and -_MAX_ELEMENT <= v <= _MAX_ELEMENT for v in values):
        raise BatchFormatError(f"batch: {where}: expected integers", field=where)
    return values


def _get_varints(tail: bytes, cursor: list[int], count: int) -> list[int]:
    out: list[int] = []
    at = cursor[0]
    for _ in range(count):
        v = shift = 0
        while True:
            if at >= len(tail) or shift > 7 * (MAX_VARINT - 1):
                raise BatchFormatError("batch: data: a value cut short or too long", field="data")
            byte = tail[at]
            at += 1
            v |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        out.append(v >> 1 if v % 2 == 0 else -(v >> 1) - 1)
    cursor[0] = at
    return out


def _lower(node: Any, n: int, tail: bytes, cursor: list[int]) -> None:
    """Put `tail`'s values and bytes back where `_lift` took them (decoding,
    untrusted); `cursor` is [next byte of tail]."""
    if type(node) is list:
        for item in node:
            _lower(item, n, tail, cursor)
    elif type(node) is dict:
        for key, value in node.items():
            if key == "p" and value == ALL_MARK:
                width = node.get("w")
                if type(width) is not int or not 1 <= width <= MAX_WIDTH:
                    continue  # read_int_column refuses the column
                if cursor[0] + n * width > len(tail):
                    raise BatchFormatError(
                        "batch: data: fewer bytes than the packed columns", field="data"
                    )
                node[key] = tail[cursor[0] : cursor[0] + n * width]
                cursor[0] += n * width
            elif key in INT_LISTS and value in (ONE_MARK, ALL_MARK):
                node[key] = _get_varints(tail, cursor, 1 if value == ONE_MARK else n)
            elif key not in OPAQUE:
                _lower(value, n, tail, cursor)


def decode_columns(data: bytes, *, max_decompressed: int) -> list[BatchRecord]:
    """Decompress and validate a format-2 batch, refusing anything over `max_decompressed` bytes.

    The records come back as format 1 gives them: each group's in order, the
    groups in the order sent.

    Raises:
        ValueError: max_decompressed is not a positive int.
        BatchFormatError: not zstd with format 2's dictionary, larger than the
            bound once decompressed, not JSON, not the schema, a number out of
            range, or the same seq twice.
    """
    if type(max_decompressed) is not int or max_decompressed <= 0:
        raise ValueError(f"max_decompressed: expected a positive int, got {max_decompressed!r}")
    dctx = zstandard.ZstdDecompressor(
        dict_data=zstd_dictionary(),
        max_window_size=MAX_WINDOW_BYTES,
        format=zstandard.FORMAT_ZSTD1_MAGICLESS,
    )
    text, _, tail = _decompress_with(dctx, data, max_decompressed).partition(b"\x00")
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BatchFormatError(f"batch: not JSON: {exc}") from exc
    body = json_object(raw, "batch")
    if body.get("v") != COLUMNS_VERSION:
        raise BatchFormatError(f"batch: v: expected {COLUMNS_VERSION}", field="v")
    cursor = [0]
    for group in json_list(body.get("groups"), "groups"):
        n = group.get("n") if type(group) is dict else None
        # Every value takes a byte at least: a larger n cannot be honest.
        if type(n) is int and 0 <= n <= len(tail):
            _lower(group, n, tail, cursor)
    if cursor[0] != len(tail):
        raise BatchFormatError("batch: data: bytes left over after the columns", field="data")
    out: list[BatchRecord] = []
    seen: set[int] = set()
    for i, group in enumerate(json_list(body.get("groups"), "groups")):
        for record in _decode_group(group, f"groups.{i}"):
            if record.seq in seen:
                raise BatchFormatError(f"batch: seq {record.seq} appears twice", field="groups")
            seen.add(record.seq)
            out.append(record)
    return out


def _decode_group(raw: Any, where: str) -> Iterator[BatchRecord]:
    group = json_object(raw, where)
    stream = group.get("stream")
    if (
        not isinstance(stream, str)
        or not 1 <= len(stream) <= MAX_STREAM_LEN
        or STREAM_RE.fullmatch(stream) is None
    ):
        raise BatchFormatError(
            f"batch: {where}.stream: expected {STREAM_RE.pattern}, at most {MAX_STREAM_LEN}",
            field=f"{where}.stream",
        )
    n = group.get("n")
    if type(n) is not int or n < 0:
        raise BatchFormatError(f"batch: {where}.n: expected a count", field=f"{where}.n")
    seqs = undelta(int_list(group.get("seq"), f"{where}.seq", n))
    priorities = int_list(group.get("priority"), f"{where}.priority", n, one=True)
    created = _floats(group.get("created"), f"{where}.created", n, None)
    expires = _floats(group.get("expires"), f"{where}.expires", n, group.get("created"))
    payloads = _payloads(group.get("payload"), f"{where}.payload", n)
    for k in range(n):
        priority = priorities[k if len(priorities) > 1 else 0]
        if not 1 <= seqs[k] <= MAX_VALUE:
            raise BatchFormatError(f"batch: {where}.seq.{k}: out of range", field=f"{where}.seq")
        if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
            raise BatchFormatError(
                f"batch: {where}.priority: expected {MIN_PRIORITY}..{MAX_PRIORITY}",
                field=f"{where}.priority",
            )
        for name, value in (("created", created[k]), ("expires", expires[k])):
            if not 0 <= value <= MAX_EPOCH_S:
                raise BatchFormatError(
                    f"batch: {where}.{name}.{k}: expected Unix seconds, 0..{MAX_EPOCH_S:.0f}",
                    field=f"{where}.{name}",
                )
        yield BatchRecord(seqs[k], stream, priority, created[k], expires[k], payloads[k])


def _payloads(raw: Any, where: str, n: int) -> list[Any]:
    payload = json_object(raw, where)
    if "j" in payload:
        return json_list(payload["j"], f"{where}.j", n)
    shapes = [
        [_key(k, f"{where}.keys") for k in json_list(s, f"{where}.keys")]
        for s in json_list(payload.get("keys"), f"{where}.keys")
    ]
    if any(len(set(keys)) != len(keys) for keys in shapes):
        raise BatchFormatError(f"batch: {where}.keys: a key twice", field=f"{where}.keys")
    shape = int_list(payload.get("shape"), f"{where}.shape", n, one=True)
    if any(not 0 <= s < len(shapes) for s in shape):
        raise BatchFormatError(f"batch: {where}.shape: no such keys", field=f"{where}.shape")
    per_record = [shapes[shape[k if len(shape) > 1 else 0]] for k in range(n)]
    wanted: dict[str, int] = {}
    for keys in per_record:
        for key in keys:
            wanted[key] = wanted.get(key, 0) + 1
    cols = json_object(payload.get("cols"), f"{where}.cols")
    if set(cols) != set(wanted):
        raise BatchFormatError(
            f"batch: {where}.cols: expected the columns of keys", field=f"{where}.cols"
        )
    columns = {key: iter(_values(cols[key], f"{where}.cols.{key}", wanted[key])) for key in cols}
    return [{key: next(columns[key]) for key in keys} for keys in per_record]


def _values(raw: Any, where: str, n: int) -> list[Any]:
    column = json_object(raw, where)
    if "j" in column:
        return json_list(column["j"], f"{where}.j", n)
    if "c" in column:
        return [column["c"]] * n
    if "prefix" in column:
        prefix, digits = column["prefix"], column.get("digits")
        if not isinstance(prefix, str) or type(digits) is not int or not 1 <= digits <= 17:
            raise BatchFormatError(f"batch: {where}: bad numbered names", field=where)
        numbers = read_int_column(column.get("n"), f"{where}.n", n)
        if any(not 0 <= v < 10**digits for v in numbers):
            raise BatchFormatError(f"batch: {where}.n: out of range", field=f"{where}.n")
        return [f"{prefix}{v:0{digits}d}" for v in numbers]
    if "i" in column or "p" in column:
        return read_int_column(column, where, n)
    return _floats(column, where, n, None)


def _floats(raw: Any, where: str, n: int, base: Any) -> list[float]:
    column = json_object(raw, where)
    if "f" in column:
        values = json_list(column["f"], f"{where}.f", n)
        if not all(type(v) is float and math.isfinite(v) for v in values):
            raise BatchFormatError(f"batch: {where}.f: expected floats", field=f"{where}.f")
        return values
    e = column.get("e")
    if type(e) is not int or not 0 <= e <= MAX_DECIMALS:
        raise BatchFormatError(f"batch: {where}.e: expected 0..{MAX_DECIMALS}", field=f"{where}.e")
    mantissas = read_int_column(column.get("m"), f"{where}.m", n)
    if column.get("rel") is True:
        base_column = json_object(base, where) if base is not None else {}
        if base_column.get("e") != e:
            raise BatchFormatError(f"batch: {where}.rel: no base column", field=f"{where}.rel")
        base_m = read_int_column(base_column.get("m"), f"{where}.m", n)
        mantissas = [m + b for m, b in zip(mantissas, base_m, strict=True)]
    ulps = read_int_column(column["u"], f"{where}.u", n) if "u" in column else [0] * n
    scale = POW10[e]
    out: list[float] = []
    for m, u in zip(mantissas, ulps, strict=True):
        if abs(m) > MAX_VALUE or abs(u) > MAX_ULPS:
            raise BatchFormatError(f"batch: {where}: value out of range", field=where)
        y = m / scale
        bits = int(UINT64.unpack(FLOAT64.pack(abs(y)))[0]) + u
        if not 0 <= bits < FINITE_BITS:
            raise BatchFormatError(f"batch: {where}: not a finite float", field=where)
        out.append(math.copysign(FLOAT64.unpack(UINT64.pack(bits))[0], y))
    return out


def _key(raw: Any, where: str) -> str:
    if not isinstance(raw, str):
        raise BatchFormatError(f"batch: {where}: expected strings", field=where)
    return raw
