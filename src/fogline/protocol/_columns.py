"""Batch format 2: the records of a batch as columns per stream, zstd with a fixed dictionary.

Format 1 (`encode_batch`) repeats every field name and every number in full
for each record; a window's summaries differ only in a few digits. Format 2
groups the records by stream and writes each field once per group, as a
column (shown here before the numbers move after the text, see below):

    {"v": 2, "groups": [{
        "stream": "summaries", "n": 2,
        "seq": [115, 1],                          # first, then differences
        "priority": [5],                          # one value: every record's
        "created": {"e": 6, "m": {"i": [1796598697462681, 0]}},
        "expires": {"e": 6, "m": {"i": [86400000000, 0]}, "rel": true},
        "payload": {"keys": [["sensor", "count", "mean"]], "shape": [0],
                    "cols": {"sensor": {"prefix": "s", "digits": 4, "n": {"i": [0, 1]}},
                             "count": {"c": 100},
                             "mean": {"e": 4, "m": {"i": [498106, 3882]},
                                      "u": {"i": [-1, 0]}}}}}]}

A float column is exact, bit for bit: each value is the decimal m / 10**e
(Python's int division rounds that correctly, on every platform) moved by u
steps of the float's last bit, so 49.81059999999999 (a mean of readings with
two decimals, off by one step of float arithmetic) travels as 498106 and -1
instead of 17 digits. `rel` columns hold differences from `created`'s
mantissas. Where no e up to MAX_DECIMALS fits (random bits), the column holds
the floats themselves (`{"f": [...]}`), which JSON carries exactly too.
Int columns travel as differences (`{"i": [...]}`) or, when smaller, packed
(`{"lo": min, "w": bytes, "p": planes}`: each value minus the least, byte
planes one after the other); numbered names as prefix and numbers; a value
every record shares once (`{"c": v}`, equal in type and bits); anything else
as JSON values (`{"j": [...]}`). Payloads that are not all objects travel as
one JSON list (`"payload": {"j": [...]}`). Keys keep their order per record
(`keys` lists each distinct order once, `shape` names one per record; one
entry means all).

Then the numbers leave the text: past a NUL byte (JSON text has none) come,
in document order, every int list under `seq`, `priority`, `shape` and `i`
as zigzag varints (protobuf's sint64) and the bytes of every packed column,
leaving `"#"` (the group's n values) or `"#1"` (one value for all). What is
left of a stream's batch is the same text batch after batch, and it is in
the dictionary both sides hold (DICTIONARY): zstd copies it in a few long
matches, and numbers cost bytes rather than digits, so a batch of five
anomalies costs about its numbers. Frames carry no magic number, checksum,
dictionary id or content size (the media type names the format; TLS guards
the bytes).

Decoding is bounded like format 1 (decompressed size, window) and checks
every list's length, every number's range and every field against the same
rules as format 1; any fault is a BatchFormatError naming the field.
"""

import datetime as dt
import itertools
import math
import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import orjson
import zstandard

from ._telemetry import (
    MAX_EPOCH_S,
    MAX_PRIORITY,
    MAX_STREAM_LEN,
    MAX_WINDOW_BYTES,
    MIN_PRIORITY,
    STREAM_RE,
    BatchFormatError,
    BatchRecord,
    EncodableRecord,
    _decompress_with,
)

COLUMNS_VERSION: Final = 2
# The media type of a format-2 body; format 1 is application/json with
# content-encoding zstd. The hub names the types it reads in `Accept-Post`.
COLUMNS_MEDIA_TYPE: Final = "application/vnd.fogline.batch.v2+zstd"
MAX_DECIMALS: Final = 12
# Batches are small (500 records, tens of KiB of text): level 19 costs a few
# milliseconds per batch and saves a tenth of the bytes over level 3. No
# checksum: TLS guards the bytes in transit and the decoder checks every field.
COLUMNS_ZSTD_LEVEL: Final = 19
# |u| above this is not "a float a step off a short decimal": the column
# then travels as floats.
_MAX_ULPS: Final = 1 << 16
# Values and mantissas stay within 2**60, so their differences (and the
# differences of `rel` columns) fit in a signed 64-bit integer, which is what
# orjson writes; a seq or an int beyond that sends the batch in format 1.
_MAX_VALUE: Final = 1 << 60
_MAX_ELEMENT: Final = 1 << 62
_FINITE_BITS: Final = 0x7FF0000000000000
# Where `_lift` takes int lists from (`_INT_LISTS` keys), what it leaves
# (`_ALL`: the group's n values, `_ONE`: one), and what it never looks into.
_INT_LISTS: Final = frozenset({"seq", "priority", "shape", "i"})
_OPAQUE: Final = frozenset({"j", "c", "f", "keys", "stream", "prefix", "p"})
_MAX_VARINT: Final = 9  # bytes of a zigzag varint up to 2**63
_SHARED: Final = frozenset({"priority", "shape"})
_ALL: Final = "#"
_ONE: Final = "#1"
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND: Final = dt.timedelta(microseconds=1)
_FEW_ULPS: Final = 8
# Packing pays only on long columns: short ones keep the dictionary's form.
_PACK_MIN: Final = 64
_MAX_WIDTH: Final = 8
# A string column of numbered names ("s0000", "line-12") travels as the
# prefix and the numbers: a fleet's sensor names then cost next to nothing.
_DIGITS: Final = "0123456789"
_MAX_DIGITS: Final = 17
_MAX_PREFIX: Final = 64
_POW10: Final = tuple(10**e for e in range(MAX_DECIMALS + 1))
_D: Final = struct.Struct("<d")
_MAGNITUDE: Final = (1 << 63) - 1
_Q: Final = struct.Struct("<Q")

# Version 2's dictionary, fixed for good: a batch decoded with another one is
# garbage that the checks below refuse. Changing it means format 3.
DICTIONARY: Final = (
    b'{"j":[]},{"f":[]},{"lo":0,"w":1,"p":"#"},{"lo":0,"w":2,"p":"#"},{"lo":0,"w":3,"p":"#'
    b'"},{"v":2,"groups":[{"stream":"logs/agent","n":1,"seq":"#","priority":"#1","created"'
    b':{"e":6,"m":{"i":"#"}},"expires":{"e":6,"m":{"i":"#"},"rel":true},"payload":{"keys":'
    b'[["ts","level","logger","message"]],"shape":"#1","cols":{"ts":{"e":1,"m":{"i":"#"}},'
    b'"level":{"c":"INFO"},"logger":{"c":"fogline.agent"},"message":{"c":"started"}}}},{"s'
    b'tream":"summaries","n":2,"seq":"#","priority":"#1","created":{"e":6,"m":{"i":"#"}},"'
    b'expires":{"e":6,"m":{"i":"#"},"rel":true},"payload":{"keys":[["sensor","window_start'
    b'","window_end","count","max","mean","min"]],"shape":"#1","cols":{"sensor":{"prefix":'
    b'"s","digits":4,"n":{"i":"#"}},"window_start":{"c":1700000000.0},"window_end":{"c":17'
    b'00000010.0},"count":{"c":100},"max":{"e":2,"m":{"i":"#"}},"mean":{"e":4,"m":{"i":"#"'
    b'},"u":{"i":"#"}},"min":{"e":2,"m":{"i":"#"}}}}},{"stream":"anomalies","n":2,"seq":"#'
    b'","priority":"#1","created":{"e":6,"m":{"i":"#"}},"expires":{"e":6,"m":{"i":"#"},"re'
    b'l":true},"payload":{"keys":[["value","ts","sensor","metric","anomaly","score"]],"sha'
    b'pe":"#1","cols":{"value":{"e":2,"m":{"i":"#"}},"ts":{"e":1,"m":{"i":"#"}},"sensor":{'
    b'"prefix":"s","digits":4,"n":{"i":"#"}},"metric":{"c":"temp"},"anomaly":{"c":true},"s'
    b'core":{"e":2,"m":{"i":"#"},"u":{"i":"#"}}}}}]}'
)


def _dictionary() -> zstandard.ZstdCompressionDict:
    # A fresh one per use: python-zstandard does not promise that one object
    # is safe to share between the hub's threads, and a raw dictionary of
    # this size costs microseconds to load.
    return zstandard.ZstdCompressionDict(DICTIONARY, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


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
        if not 1 <= r.seq <= _MAX_VALUE:
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
    compressor = zstandard.ZstdCompressor(compression_params=params, dict_data=_dictionary())
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
            if key in _INT_LISTS and type(value) is list:
                for v in value:
                    _put_varint(tail, v)
                # "#1" only where one value stands for all (priority, shape):
                # elsewhere one value is a group of one, written like any n.
                node[key] = _ONE if len(value) == 1 and key in _SHARED else _ALL
            elif key == "p" and type(value) is bytes:
                tail += value
                node[key] = _ALL
            elif key not in _OPAQUE:
                _lift(value, tail)


def _put_varint(out: bytearray, value: int) -> None:
    """Zigzag, then 7 bits a byte, low first (protobuf's sint64)."""
    v = value * 2 if value >= 0 else -value * 2 - 1
    while v > 0x7F:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _get_varints(tail: bytes, cursor: list[int], count: int) -> list[int]:
    out: list[int] = []
    at = cursor[0]
    for _ in range(count):
        v = shift = 0
        while True:
            if at >= len(tail) or shift > 7 * (_MAX_VARINT - 1):
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
            if key == "p" and value == _ALL:
                width = node.get("w")
                if type(width) is not int or not 1 <= width <= _MAX_WIDTH:
                    continue  # _int_col refuses the column
                if cursor[0] + n * width > len(tail):
                    raise BatchFormatError(
                        "batch: data: fewer bytes than the packed columns", field="data"
                    )
                node[key] = tail[cursor[0] : cursor[0] + n * width]
                cursor[0] += n * width
            elif key in _INT_LISTS and value in (_ONE, _ALL):
                node[key] = _get_varints(tail, cursor, 1 if value == _ONE else n)
            elif key not in _OPAQUE:
                _lower(value, n, tail, cursor)


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
        rounded = (stamp - _EPOCH) // _MICROSECOND / 1_000_000
        if dt.datetime.fromtimestamp(rounded, dt.UTC) == stamp:
            return rounded
    except (OverflowError, OSError, ValueError):
        pass
    return seconds


def _payload_columns(payloads: list[Any]) -> dict[str, Any]:
    if not all(type(p) is dict for p in payloads):
        return {"j": payloads}
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
    if _all_the_same(values) and not (len(values) == 1 and _is_numbered(values[0])):
        return {"c": values[0]}
    if all(type(v) is float for v in values):
        return _float_column(values)
    if all(type(v) is int and -_MAX_VALUE <= v <= _MAX_VALUE for v in values):
        return _int_column(values)
    if all(type(v) is str for v in values):
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
    head = name.rstrip(_DIGITS)
    run = len(name) - len(head)
    if run == 0:
        return None
    cut = len(name) - min(run, _MAX_DIGITS)
    return (name[:cut], name[cut:]) if cut <= _MAX_PREFIX else None


def _is_numbered(value: Any) -> bool:
    """A number, or a numbered name (`s0042`): a column even when it is one."""
    return type(value) in (int, float) or (type(value) is str and _numbered(value) is not None)


def _all_the_same(values: list[Any]) -> bool:
    """Whether every value is the first, type and bits alike (-0.0 is not 0.0,
    1 is not 1.0, also inside lists and objects, where == says they are)."""
    first = values[0]
    if type(first) in (dict, list):
        text = orjson.dumps(first)
        return all(type(v) is type(first) and orjson.dumps(v) == text for v in values)
    if type(first) is float:
        bits = _D.pack(first)
        return all(type(v) is float and _D.pack(v) == bits for v in values)
    return all(type(v) is type(first) and v == first for v in values)


def _int_column(values: list[int]) -> dict[str, Any]:
    """Integers within _MAX_VALUE, as differences in JSON or packed, whichever is smaller.

    Packed: each value minus the smallest, in `w` little-endian bytes, all
    first bytes then all second bytes (the high bytes, nearly constant, then
    compress to nothing); `_lift` moves the bytes after the text. Random
    readings pack to about a fifth fewer bytes than their digits; counters
    and sequences are cheaper as differences.
    """
    deltas: dict[str, Any] = {"i": _deltas(values)}
    if len(values) < _PACK_MIN:
        return deltas
    low = min(values)
    offsets = [v - low for v in values]
    width = max(1, (max(offsets).bit_length() + 7) // 8)
    planes = b"".join(bytes((o >> (8 * i)) & 0xFF for o in offsets) for i in range(width))
    trial = zstandard.ZstdCompressor(level=1)
    if len(trial.compress(planes)) < len(trial.compress(orjson.dumps(deltas["i"]))):
        return {"lo": low, "w": width, "p": planes}
    return deltas


def _float_column(values: list[float], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A column of floats, as decimals and steps if some e fits every value.

    The fewest decimals whose steps stay within _FEW_ULPS win; failing that,
    those with the fewest steps. With `base` (the created column) the
    mantissas are differences from its own, so `expires` (created + ttl)
    costs almost nothing.
    """
    best: tuple[int, list[int], list[int]] | None = None
    for e in range(MAX_DECIMALS + 1):
        if _decimals(values[:1], e) is None:  # most e fail on the first value: cheaply
            continue
        coded = _decimals(values, e)
        if coded is None:
            continue
        worst = max(abs(u) for u in coded[1])
        if best is None or worst < max(abs(u) for u in best[2]):
            best = (e, *coded)
        if worst <= _FEW_ULPS:
            break
    if best is None:
        return {"f": values}
    e, mantissas, ulps = best
    column: dict[str, Any] = {"e": e}
    if base is not None and base.get("e") == e:
        base_m = _int_col(base["m"], "created.m", len(values))
        column["m"] = _int_column([m - b for m, b in zip(mantissas, base_m, strict=True)])
        column["rel"] = True
    else:
        column["m"] = _int_column(mantissas)
    if any(ulps):
        column["u"] = _int_column(ulps)
    return column


def _decimals(values: list[float], e: int) -> tuple[list[int], list[int]] | None:
    """(mantissas, steps) of `values` as decimals with e places, or None if
    one does not fit (not finite, too large, another sign, too many steps)."""
    scale = _POW10[e]
    if not all(math.isfinite(x) and abs(x) * scale < _MAX_VALUE for x in values):
        return None
    mantissas = [round(x * scale) for x in values]
    # The steps between floats of one sign are the differences of their bit
    # patterns read as integers: packed all at once, not float by float.
    xs = _bits([*values])
    ys = _bits([m / scale for m in mantissas])
    ulps: list[int] = []
    for bx, by in zip(xs, ys, strict=True):
        if (bx < 0) != (by < 0):
            return None
        u = (bx & _MAGNITUDE) - (by & _MAGNITUDE)
        if abs(u) > _MAX_ULPS:
            return None
        ulps.append(u)
    return mantissas, ulps


def _bits(values: list[float]) -> tuple[int, ...]:
    """Each float's 64 bits as a signed integer (negative: the sign bit is set)."""
    return struct.unpack(f"<{len(values)}q", struct.pack(f"<{len(values)}d", *values))


def _deltas(values: Sequence[int]) -> list[int]:
    return [values[0], *(b - a for a, b in itertools.pairwise(values))] if values else []


def _undelta(deltas: Sequence[int]) -> list[int]:
    out: list[int] = []
    total = 0
    for d in deltas:
        total += d
        out.append(total)
    return out


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
        dict_data=_dictionary(),
        max_window_size=MAX_WINDOW_BYTES,
        format=zstandard.FORMAT_ZSTD1_MAGICLESS,
    )
    text, _, tail = _decompress_with(dctx, data, max_decompressed).partition(b"\x00")
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BatchFormatError(f"batch: not JSON: {exc}") from exc
    body = _object(raw, "batch")
    if body.get("v") != COLUMNS_VERSION:
        raise BatchFormatError(f"batch: v: expected {COLUMNS_VERSION}", field="v")
    cursor = [0]
    for group in _list(body.get("groups"), "groups"):
        n = group.get("n") if type(group) is dict else None
        # Every value takes a byte at least: a larger n cannot be honest.
        if type(n) is int and 0 <= n <= len(tail):
            _lower(group, n, tail, cursor)
    if cursor[0] != len(tail):
        raise BatchFormatError("batch: data: bytes left over after the columns", field="data")
    out: list[BatchRecord] = []
    seen: set[int] = set()
    for i, group in enumerate(_list(body.get("groups"), "groups")):
        for record in _decode_group(group, f"groups.{i}"):
            if record.seq in seen:
                raise BatchFormatError(f"batch: seq {record.seq} appears twice", field="groups")
            seen.add(record.seq)
            out.append(record)
    return out


def _decode_group(raw: Any, where: str) -> Iterator[BatchRecord]:
    group = _object(raw, where)
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
    seqs = _undelta(_ints(group.get("seq"), f"{where}.seq", n))
    priorities = _ints(group.get("priority"), f"{where}.priority", n, one=True)
    created = _floats(group.get("created"), f"{where}.created", n, None)
    expires = _floats(group.get("expires"), f"{where}.expires", n, group.get("created"))
    payloads = _payloads(group.get("payload"), f"{where}.payload", n)
    for k in range(n):
        priority = priorities[k if len(priorities) > 1 else 0]
        if not 1 <= seqs[k] <= _MAX_VALUE:
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
    payload = _object(raw, where)
    if "j" in payload:
        return _list(payload["j"], f"{where}.j", n)
    shapes = [
        [_key(k, f"{where}.keys") for k in _list(s, f"{where}.keys")]
        for s in _list(payload.get("keys"), f"{where}.keys")
    ]
    if any(len(set(keys)) != len(keys) for keys in shapes):
        raise BatchFormatError(f"batch: {where}.keys: a key twice", field=f"{where}.keys")
    shape = _ints(payload.get("shape"), f"{where}.shape", n, one=True)
    if any(not 0 <= s < len(shapes) for s in shape):
        raise BatchFormatError(f"batch: {where}.shape: no such keys", field=f"{where}.shape")
    per_record = [shapes[shape[k if len(shape) > 1 else 0]] for k in range(n)]
    wanted: dict[str, int] = {}
    for keys in per_record:
        for key in keys:
            wanted[key] = wanted.get(key, 0) + 1
    cols = _object(payload.get("cols"), f"{where}.cols")
    if set(cols) != set(wanted):
        raise BatchFormatError(
            f"batch: {where}.cols: expected the columns of keys", field=f"{where}.cols"
        )
    columns = {key: iter(_values(cols[key], f"{where}.cols.{key}", wanted[key])) for key in cols}
    return [{key: next(columns[key]) for key in keys} for keys in per_record]


def _values(raw: Any, where: str, n: int) -> list[Any]:
    column = _object(raw, where)
    if "j" in column:
        return _list(column["j"], f"{where}.j", n)
    if "c" in column:
        return [column["c"]] * n
    if "prefix" in column:
        prefix, digits = column["prefix"], column.get("digits")
        if not isinstance(prefix, str) or type(digits) is not int or not 1 <= digits <= 17:
            raise BatchFormatError(f"batch: {where}: bad numbered names", field=where)
        numbers = _int_col(column.get("n"), f"{where}.n", n)
        if any(not 0 <= v < 10**digits for v in numbers):
            raise BatchFormatError(f"batch: {where}.n: out of range", field=f"{where}.n")
        return [f"{prefix}{v:0{digits}d}" for v in numbers]
    if "i" in column or "p" in column:
        return _int_col(column, where, n)
    return _floats(column, where, n, None)


def _int_col(raw: Any, where: str, n: int) -> list[int]:
    """An int column (differences or packed), every value within _MAX_VALUE."""
    column = _object(raw, where)
    if "i" in column:
        values = _undelta(_ints(column["i"], f"{where}.i", n))
    else:
        low, width, planes = column.get("lo"), column.get("w"), column.get("p")
        if (
            type(low) is not int
            or abs(low) > _MAX_VALUE
            or type(width) is not int
            or not 1 <= width <= _MAX_WIDTH
            or type(planes) is not bytes
            or len(planes) != n * width
        ):
            raise BatchFormatError(f"batch: {where}: bad packed column", field=where)
        values = [
            low + int.from_bytes(bytes(planes[i * n + k] for i in range(width)), "little")
            for k in range(n)
        ]
    if any(abs(v) > _MAX_VALUE for v in values):
        raise BatchFormatError(f"batch: {where}: value out of range", field=where)
    return values


def _floats(raw: Any, where: str, n: int, base: Any) -> list[float]:
    column = _object(raw, where)
    if "f" in column:
        values = _list(column["f"], f"{where}.f", n)
        if not all(type(v) is float and math.isfinite(v) for v in values):
            raise BatchFormatError(f"batch: {where}.f: expected floats", field=f"{where}.f")
        return values
    e = column.get("e")
    if type(e) is not int or not 0 <= e <= MAX_DECIMALS:
        raise BatchFormatError(f"batch: {where}.e: expected 0..{MAX_DECIMALS}", field=f"{where}.e")
    mantissas = _int_col(column.get("m"), f"{where}.m", n)
    if column.get("rel") is True:
        base_column = _object(base, where) if base is not None else {}
        if base_column.get("e") != e:
            raise BatchFormatError(f"batch: {where}.rel: no base column", field=f"{where}.rel")
        base_m = _int_col(base_column.get("m"), f"{where}.m", n)
        mantissas = [m + b for m, b in zip(mantissas, base_m, strict=True)]
    ulps = _int_col(column["u"], f"{where}.u", n) if "u" in column else [0] * n
    scale = _POW10[e]
    out: list[float] = []
    for m, u in zip(mantissas, ulps, strict=True):
        if abs(m) > _MAX_VALUE or abs(u) > _MAX_ULPS:
            raise BatchFormatError(f"batch: {where}: value out of range", field=where)
        y = m / scale
        bits = int(_Q.unpack(_D.pack(abs(y)))[0]) + u
        if not 0 <= bits < _FINITE_BITS:
            raise BatchFormatError(f"batch: {where}: not a finite float", field=where)
        out.append(math.copysign(_D.unpack(_Q.pack(bits))[0], y))
    return out


def _object(raw: Any, where: str) -> Mapping[str, Any]:
    if type(raw) is not dict:
        raise BatchFormatError(f"batch: {where}: expected an object", field=where)
    return raw


def _list(raw: Any, where: str, n: int | None = None) -> list[Any]:
    if type(raw) is not list or (n is not None and len(raw) != n):
        expected = "a list" if n is None else f"a list of {n}"
        raise BatchFormatError(f"batch: {where}: expected {expected}", field=where)
    return raw


def _ints(raw: Any, where: str, n: int, *, one: bool = False) -> list[int]:
    values = raw if one and type(raw) is list and len(raw) == 1 and n > 0 else _list(raw, where, n)
    if not all(type(v) is int and -_MAX_ELEMENT <= v <= _MAX_ELEMENT for v in values):
        raise BatchFormatError(f"batch: {where}: expected integers", field=where)
    return values


def _key(raw: Any, where: str) -> str:
    if not isinstance(raw, str):
        raise BatchFormatError(f"batch: {where}: expected strings", field=where)
    return raw
