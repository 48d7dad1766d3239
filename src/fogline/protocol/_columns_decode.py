"""Batch format 2, the decoder: untrusted bytes back into records, every field
checked (the format itself: _columns.py)."""

import bisect
import functools
import itertools
import math
import operator
import re
import struct
from collections.abc import Mapping
from typing import Any, Final

import orjson
import zstandard

from ._columns import (
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
    int_list,
    json_list,
    json_object,
    read_int_column,
    undelta,
    zstd_dictionary,
)
from ._telemetry import (
    MAX_EPOCH_S,
    MAX_PRIORITY,
    MAX_STREAM_LEN,
    MAX_WINDOW_BYTES,
    MIN_PRIORITY,
    STREAM_RE,
    BatchFormatError,
    BatchRecord,
    _decompress_with,
    first_too_deep,
    too_deep_error,
)

_FLOAT: Final = frozenset({float})


def _get_varints(tail: bytes, cursor: list[int], count: int) -> list[int]:
    """`count` zigzag varints from tail[cursor[0]:], the cursor moved past them.

    Whole lists at once where that is cheap: one-byte values (the common
    case: differences of counters and names) are the bytes themselves, and a
    list of longer ones is cut at its terminating bytes by one regex. Where
    neither applies (the list is cut short, a value too long), the byte by
    byte loop reads it and says what is wrong.
    """
    at = cursor[0]
    chunk = tail[at : at + count]
    if len(chunk) == count and chunk.isascii():  # every byte < 0x80: one-byte values
        raw: list[int] = list(chunk)
        cursor[0] = at + count
    else:
        found = _varint_run(count).match(tail, at)
        if found is None:
            return _get_varints_checked(tail, cursor, count)
        raw = [
            value[0]
            if len(value) == 1
            else (value[0] & 0x7F) | value[1] << 7
            if len(value) == 2
            else _varint_bytes(value)
            for value in _VARINT.findall(found.group())
        ]
        cursor[0] = found.end()
    return [(v >> 1) ^ -(v & 1) for v in raw]


# One varint: at most MAX_VARINT bytes, the last < 0x80 (what the checked
# loop accepts); a list of them is `count` of these back to back.
_VARINT_TEXT: Final = rb"[\x80-\xff]{0,%d}[\x00-\x7f]" % (MAX_VARINT - 1)
_VARINT: Final = re.compile(_VARINT_TEXT)


@functools.lru_cache(maxsize=64)
def _varint_run(count: int) -> re.Pattern[bytes]:
    return re.compile(b"(?:%s){%d}" % (_VARINT_TEXT, count))


def _varint_bytes(value: bytes) -> int:
    return sum((byte & 0x7F) << (7 * i) for i, byte in enumerate(value))


def _get_varints_checked(tail: bytes, cursor: list[int], count: int) -> list[int]:
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
    starts: list[int] = []  # where each group's records begin in `out`
    for i, group in enumerate(json_list(body.get("groups"), "groups")):
        starts.append(len(out))
        out += _decode_group(group, f"groups.{i}", seen)
    deep = first_too_deep(out)
    if deep is not None:
        i = bisect.bisect_right(starts, deep) - 1
        raise too_deep_error(f"groups.{i}.payload.{deep - starts[i]}")
    return out


def _decode_group(raw: Any, where: str, seen: set[int]) -> list[BatchRecord]:
    """A group's records, their seqs added to `seen` (refused if there already)."""
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
    if n == 0:
        return []
    # Every record's checks at once, by min and max over whole columns; if
    # one fails, the record-by-record loop finds the first fault and names it
    # (a seq out of range before a seq seen twice, as records come).
    if (
        min(seqs) < 1
        or max(seqs) > MAX_VALUE
        or min(priorities) < MIN_PRIORITY
        or max(priorities) > MAX_PRIORITY
        or min(min(created), min(expires)) < 0
        or max(max(created), max(expires)) > MAX_EPOCH_S
        or len(set(seqs)) != n
        or not seen.isdisjoint(seqs)
    ):
        _check_records(where, seqs, priorities, created, expires, seen)
    seen.update(seqs)
    if len(priorities) == 1:
        priorities = priorities * n
    return list(
        map(BatchRecord, seqs, itertools.repeat(stream, n), priorities, created, expires, payloads)
    )


def _check_records(
    where: str,
    seqs: list[int],
    priorities: list[int],
    created: list[float],
    expires: list[float],
    seen: set[int],
) -> None:
    """Raise on the first record at fault, in the order records come."""
    for k, seq in enumerate(seqs):
        priority = priorities[k if len(priorities) > 1 else 0]
        if not 1 <= seq <= MAX_VALUE:
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
        if seq in seen:
            raise BatchFormatError(f"batch: seq {seq} appears twice", field="groups")
        seen.add(seq)
    raise AssertionError("a record failed the column checks but none one by one")


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
    if shape and (min(shape) < 0 or max(shape) >= len(shapes)):
        raise BatchFormatError(f"batch: {where}.shape: no such keys", field=f"{where}.shape")
    if n > 0 and len(set(shape)) == 1:
        return _one_shape(
            shapes[shape[0]], json_object(payload.get("cols"), f"{where}.cols"), where, n
        )
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


def _one_shape(keys: list[str], cols: Mapping[str, Any], where: str, n: int) -> list[Any]:
    """`_payloads` where every record has the same keys (summaries, anomalies):
    the rows are the columns zipped, not one lookup per field."""
    if set(cols) != set(keys):
        raise BatchFormatError(
            f"batch: {where}.cols: expected the columns of keys", field=f"{where}.cols"
        )
    # Read in the order the columns came, as `_payloads` does: the same fault first.
    values = {key: _values(cols[key], f"{where}.cols.{key}", n) for key in cols}
    if not keys:
        return [{} for _ in range(n)]
    # Each row has one value per key by construction; a strict zip per record
    # would cost a tenth of the decode.
    rows = zip(*(values[k] for k in keys), strict=True)
    return [dict(zip(keys, row, strict=False)) for row in rows]


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
        if numbers and (min(numbers) < 0 or max(numbers) >= 10**digits):
            raise BatchFormatError(f"batch: {where}.n: out of range", field=f"{where}.n")
        # str and zfill pad a number >= 0 as the format spec 0{digits}d does.
        return [prefix + s.zfill(digits) for s in map(str, numbers)]
    if "i" in column or "p" in column:
        return read_int_column(column, where, n)
    return _floats(column, where, n, None)


def _floats(raw: Any, where: str, n: int, base: Any) -> list[float]:
    column = json_object(raw, where)
    if "f" in column:
        values = json_list(column["f"], f"{where}.f", n)
        if not set(map(type, values)) <= _FLOAT or not all(map(math.isfinite, values)):
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
        mantissas = list(map(operator.add, mantissas, base_m))
    ulps = read_int_column(column["u"], f"{where}.u", n) if "u" in column else None
    scale = POW10[e]
    if n == 0:
        return []
    if min(mantissas) < -MAX_VALUE or max(mantissas) > MAX_VALUE:
        return _steps_checked(mantissas, ulps or [0] * n, scale, where)
    # A step of 0 leaves m / scale as it is (finite: |m| <= 2**60).
    ys = list(map(operator.truediv, mantissas, itertools.repeat(scale, n)))
    if ulps is None or not any(ulps):
        return ys
    # Steps move the bit patterns of |y| (ints of one sign, in the order of
    # the floats), packed and unpacked a column at a time.
    if min(ulps) < -MAX_ULPS or max(ulps) > MAX_ULPS:
        return _steps_checked(mantissas, ulps, scale, where)
    bits = list(
        map(operator.add, struct.unpack(f"<{n}Q", struct.pack(f"<{n}d", *map(abs, ys))), ulps)
    )
    if min(bits) < 0 or max(bits) >= FINITE_BITS:
        return _steps_checked(mantissas, ulps, scale, where)
    moved = struct.unpack(f"<{n}d", struct.pack(f"<{n}Q", *bits))
    return list(map(math.copysign, moved, ys))


def _steps_checked(mantissas: list[int], ulps: list[int], scale: int, where: str) -> list[float]:
    """`_floats` value by value: it names the first value at fault."""
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
