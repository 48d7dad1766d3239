"""The batch wire format between the uplink and the hub: zstd-compressed JSON.

    {"records": [{"seq": 17, "stream": "line1/temp", "priority": 5,
                  "created": 1700000000.25, "expires": 1700086400.25,
                  "payload": {"avg": 21.5, "n": 60}}]}

`payload` is the record's JSON embedded as a value, not base64: the outbox
only accepts JSON payloads, so a batch always encodes; the hub gets a
document it can store and query without a second decode; and zstd
compresses text far better than base64. The payload bytes are embedded
verbatim (orjson.Fragment), so encoding costs no parse.

The hub must decode with `decode_batch`, which bounds the decompressed size
(a few KiB of zstd can expand to gigabytes) and the window size, and checks
every field. It lives in the protocol package because both sides use it.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final, Protocol

import orjson
import zstandard
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from fogline._errors import FoglineError

MIN_PRIORITY: Final = 0
MAX_PRIORITY: Final = 9
MAX_STREAM_LEN: Final = 128
# Stream names become metric labels and counter keys on the hub: no spaces,
# quotes or control characters.
STREAM_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]*")


class BatchFormatError(FoglineError):
    """An encoded batch is malformed, too large when decompressed, or not the schema.

    `field` names the part at fault where there is one (`records.3.created`).
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


ZSTD_LEVEL: Final = 3
# The encoder's window at level 3 is at most 2 MiB; refusing larger windows
# bounds the decoder's memory whatever the frame header claims.
MAX_WINDOW_BYTES: Final = 8 * 1024 * 1024
_READ_CHUNK: Final = 1024 * 1024
_MAX_SEQ: Final = 2**63 - 1
# Record times are Unix seconds. The hub turns `created` into a datetime: a
# value outside the years 1970 to 9999 has no datetime (1e20, -1e12) and a
# clock that far off is broken, so such a record is refused, not stored.
MAX_EPOCH_S: Final = 253402300799.0  # 9999-12-31T23:59:59Z
# How deep a record's payload may nest (`{"a": [1]}` is 2 deep). orjson reads
# 1,024 levels, but the hub's JSON column fails to store about 1,000 (HTTP
# 500: the uplink would retry the batch forever) and its query answers fail
# past about 250 (every window holding the record). Telemetry needs a few.
MAX_PAYLOAD_DEPTH: Final = 64
_CONTAINERS: Final = frozenset({dict, list})


class EncodableRecord(Protocol):
    """What `encode_batch` reads from a record (an `OutboxRecord` fits)."""

    @property
    def seq(self) -> int: ...
    @property
    def stream(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def created(self) -> float: ...
    @property
    def expires(self) -> float: ...
    @property
    def payload(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """One record of a decoded batch, as the hub stores it."""

    seq: int
    stream: str
    priority: int
    created: float
    expires: float
    payload: Any  # the JSON value the agent queued (usually a dict)


def encode_batch(records: Sequence[EncodableRecord]) -> bytes:
    """Serialise and compress a batch for the hub.

    Payload bytes are embedded without parsing: the outbox only accepts JSON.
    Bytes damaged on disk since then make the hub refuse the batch, and the
    uplink's split isolates the damaged record.

    Raises:
        BatchFormatError: a field cannot be serialised at all.
    """
    body = {
        "records": [
            {
                "seq": r.seq,
                "stream": r.stream,
                "priority": r.priority,
                "created": r.created,
                "expires": r.expires,
                "payload": orjson.Fragment(r.payload),
            }
            for r in records
        ]
    }
    try:
        text = orjson.dumps(body)
    except orjson.JSONEncodeError as exc:
        raise BatchFormatError(f"cannot encode the batch: {exc}") from exc
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).compress(text)


def decode_batch(data: bytes, *, max_decompressed: int) -> list[BatchRecord]:
    """Decompress and validate a batch, refusing anything over `max_decompressed` bytes.

    Raises:
        ValueError: max_decompressed is not a positive int.
        BatchFormatError: not zstd, larger than the bound once decompressed,
            not JSON, not the schema, or the same seq twice.
    """
    if type(max_decompressed) is not int or max_decompressed <= 0:
        raise ValueError(f"max_decompressed: expected a positive int, got {max_decompressed!r}")
    text = _decompress(data, max_decompressed)
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BatchFormatError(f"batch: not JSON: {exc}") from exc
    try:
        batch = _WireBatch.model_validate(raw, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BatchFormatError(
            f"batch: {where}: {first['msg']} ({exc.error_count()} problem(s))",
            field=where or None,
        ) from exc
    seen: set[int] = set()
    out: list[BatchRecord] = []
    for r in batch.records:
        if r.seq in seen:
            raise BatchFormatError(f"batch: seq {r.seq} appears twice", field="records")
        seen.add(r.seq)
        out.append(BatchRecord(r.seq, r.stream, r.priority, r.created, r.expires, r.payload))
    deep = first_too_deep(out)
    if deep is not None:
        raise too_deep_error(f"records.{deep}.payload")
    return out


def is_nested_deeper(value: Any, limit: int) -> bool:
    """Whether JSON `value` nests lists and objects more than `limit` deep.

    Level by level, without recursion, so a value nested as deep as orjson
    reads costs no stack; a level's scalars are skipped by C code (`map`,
    `isdisjoint`), so a flat summary costs about a microsecond.
    """
    level = [value] if type(value) in _CONTAINERS else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[Any] = []
        for node in level:
            children = node.values() if type(node) is dict else node
            if not _CONTAINERS.isdisjoint(map(type, children)):
                below += [child for child in children if type(child) in _CONTAINERS]
        level = below
    return False


def first_too_deep(records: Sequence[BatchRecord]) -> int | None:
    """The index of the first record whose payload nests deeper than
    MAX_PAYLOAD_DEPTH, or None.

    One walk over the whole batch (its payloads are one level below the
    list): a batch of flat summaries costs about a microsecond a record.
    """
    if not is_nested_deeper([r.payload for r in records], MAX_PAYLOAD_DEPTH + 1):
        return None
    return next(i for i, r in enumerate(records) if is_nested_deeper(r.payload, MAX_PAYLOAD_DEPTH))


def too_deep_error(where: str) -> BatchFormatError:
    return BatchFormatError(
        f"batch: {where}: nested deeper than {MAX_PAYLOAD_DEPTH} levels", field=where
    )


def _decompress(data: bytes, max_decompressed: int) -> bytes:
    dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW_BYTES)
    return _decompress_with(dctx, data, max_decompressed)


def _decompress_with(dctx: zstandard.ZstdDecompressor, data: bytes, max_decompressed: int) -> bytes:
    """Decompress at most `max_decompressed` bytes (format 2 passes its dictionary)."""
    if not isinstance(data, bytes):
        raise BatchFormatError(f"batch: expected bytes, got {type(data).__name__}")
    parts: list[bytes] = []
    total = 0
    try:
        with dctx.stream_reader(data, read_across_frames=True) as reader:
            # Read in bounded chunks and stop one byte past the limit: memory
            # stays bounded whatever the input claims about its size.
            while total <= max_decompressed:
                chunk = reader.read(min(_READ_CHUNK, max_decompressed + 1 - total))
                if not chunk:
                    break
                parts.append(chunk)
                total += len(chunk)
    except zstandard.ZstdError as exc:
        raise BatchFormatError(f"batch: not zstd: {exc}") from exc
    if total > max_decompressed:
        raise BatchFormatError(f"batch: decompresses to more than {max_decompressed} bytes")
    return b"".join(parts)


def _check_stream(value: str) -> str:
    if STREAM_RE.fullmatch(value) is None:
        raise ValueError(f"expected {STREAM_RE.pattern}")
    return value


_Stream = Annotated[
    str, Field(min_length=1, max_length=MAX_STREAM_LEN), AfterValidator(_check_stream)
]


# Tolerant of fields it does not know (a newer agent's), like every message a
# peer sends (see _base): a batch an older hub refused would be dead-lettered.
class _WireRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    seq: int = Field(ge=1, le=_MAX_SEQ)
    stream: _Stream
    priority: int = Field(ge=MIN_PRIORITY, le=MAX_PRIORITY)
    created: float = Field(allow_inf_nan=False, ge=0, le=MAX_EPOCH_S)
    expires: float = Field(allow_inf_nan=False, ge=0, le=MAX_EPOCH_S)
    payload: Any


class _WireBatch(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    records: list[_WireRecord]
