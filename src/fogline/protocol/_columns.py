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

This module holds the format (constants, dictionary, column readers);
_columns_encode.py writes it and _columns_decode.py reads it.
"""

import datetime as dt
import itertools
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Final

import zstandard

from ._telemetry import (
    BatchFormatError,
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
MAX_ULPS: Final = 1 << 16
# Values and mantissas stay within 2**60, so their differences (and the
# differences of `rel` columns) fit in a signed 64-bit integer, which is what
# orjson writes; a seq or an int beyond that sends the batch in format 1.
MAX_VALUE: Final = 1 << 60
_MAX_ELEMENT: Final = 1 << 62
_INT: Final = frozenset({int})
FINITE_BITS: Final = 0x7FF0000000000000
# Where `_lift` takes int lists from (`INT_LISTS` keys), what it leaves
# (`ALL_MARK`: the group's n values, `ONE_MARK`: one), and what it never looks into.
INT_LISTS: Final = frozenset({"seq", "priority", "shape", "i"})
OPAQUE: Final = frozenset({"j", "c", "f", "keys", "stream", "prefix", "p"})
MAX_VARINT: Final = 9  # bytes of a zigzag varint up to 2**63
SHARED_LISTS: Final = frozenset({"priority", "shape"})
ALL_MARK: Final = "#"
ONE_MARK: Final = "#1"
EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MICROSECOND: Final = dt.timedelta(microseconds=1)
FEW_ULPS: Final = 8
# Packing pays only on long columns: short ones keep the dictionary's form.
PACK_MIN: Final = 64
MAX_WIDTH: Final = 8
# A string column of numbered names ("s0000", "line-12") travels as the
# prefix and the numbers: a fleet's sensor names then cost next to nothing.
DIGITS: Final = "0123456789"
MAX_DIGITS: Final = 17
MAX_PREFIX: Final = 64
POW10: Final = tuple(10**e for e in range(MAX_DECIMALS + 1))
FLOAT64: Final = struct.Struct("<d")
MAGNITUDE: Final = (1 << 63) - 1
UINT64: Final = struct.Struct("<Q")

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


def zstd_dictionary() -> zstandard.ZstdCompressionDict:
    # A fresh one per use: python-zstandard does not promise that one object
    # is safe to share between the hub's threads, and a raw dictionary of
    # this size costs microseconds to load.
    return zstandard.ZstdCompressionDict(DICTIONARY, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def undelta(deltas: Sequence[int]) -> list[int]:
    return list(itertools.accumulate(deltas))


# Packed widths as the struct codes that read a whole column in one call:
# a width of 3, 5, 6 or 7 bytes reads as the next one up, its top planes zero.
_UNPACK_CODES: Final = ((1, "B"), (2, "H"), (4, "I"), (8, "Q"))


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
        values = _unpack_planes(planes, n, width, low)
    if values and (min(values) < -MAX_VALUE or max(values) > MAX_VALUE):
        raise BatchFormatError(f"batch: {where}: value out of range", field=where)
    return values


def _unpack_planes(planes: bytes, n: int, width: int, low: int) -> list[int]:
    """Each value of a packed column (`width` byte planes of n bytes): the
    planes interleaved into little-endian words by slice assignment, the
    words read by one struct call (not a Python call per value)."""
    size, code = next((s, c) for s, c in _UNPACK_CODES if s >= width)
    words = bytearray(n * size)
    for i in range(width):
        words[i::size] = planes[i * n : (i + 1) * n]
    return [low + v for v in struct.unpack(f"<{n}{code}", words)]


def json_object(raw: Any, where: str) -> Mapping[str, Any]:
    if type(raw) is not dict:
        raise BatchFormatError(f"batch: {where}: expected an object", field=where)
    return raw


def json_list(raw: Any, where: str, n: int | None = None) -> list[Any]:
    if type(raw) is not list or (n is not None and len(raw) != n):
        expected = "a list" if n is None else f"a list of {n}"
        raise BatchFormatError(f"batch: {where}: expected {expected}", field=where)
    return raw


def int_list(raw: Any, where: str, n: int, *, one: bool = False) -> list[int]:
    values = (
        raw if one and type(raw) is list and len(raw) == 1 and n > 0 else json_list(raw, where, n)
    )
    # Types first (min and max compare only ints then), each by C loops.
    if not set(map(type, values)) <= _INT or (
        values and (min(values) < -_MAX_ELEMENT or max(values) > _MAX_ELEMENT)
    ):
        raise BatchFormatError(f"batch: {where}: expected integers", field=where)
    return values
