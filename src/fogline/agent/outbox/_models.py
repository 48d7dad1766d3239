"""Values that go in and out of the outbox, and the checks on what goes in."""

import math
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

import orjson

# Shared with the wire format (fogline.protocol); re-exported for the outbox.
from fogline.protocol import MAX_PAYLOAD_DEPTH, is_nested_deeper
from fogline.protocol import MAX_PRIORITY as MAX_PRIORITY
from fogline.protocol import MAX_STREAM_LEN as MAX_STREAM_LEN
from fogline.protocol import MIN_PRIORITY as MIN_PRIORITY
from fogline.protocol import STREAM_RE as STREAM_RE

from ._errors import RecordRejectedError

# One record is one summary or event, not a file: bounding it keeps a batch,
# and the memory of both sides, predictable.
MAX_RECORD_BYTES: Final = 256 * 1024
# "Keep forever" is spelled as a long TTL; the cap keeps created + ttl finite.
MAX_TTL_S: Final = 10 * 365 * 24 * 3600.0


class DropReason(StrEnum):
    """Why a record left the outbox without being acknowledged by the hub."""

    QUOTA = "quota"  # evicted (or refused) to keep payload bytes under max_bytes
    EXPIRED = "expired"  # its TTL ran out before the hub acknowledged it
    DEAD_LETTER = "dead_letter"  # the hub rejected it for good (see fogline.agent.uplink)


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A record to enqueue: what the pipelines hand to `Outbox.put_many`."""

    stream: str
    payload: bytes  # UTF-8 JSON text, e.g. orjson.dumps(summary)
    priority: int  # 0..9, higher is more important
    ttl_s: float  # seconds until the record is worthless to the hub


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """A queued record, as `Outbox.next_batch` returns it."""

    seq: int  # unique per outbox, increasing, never reused
    stream: str
    priority: int
    created: float  # wall-clock seconds (the outbox clock) when it was put
    expires: float
    payload: bytes


@dataclass(frozen=True, slots=True)
class DropCount:
    """How many records of one stream and priority left for one reason."""

    reason: DropReason
    stream: str
    priority: int
    count: int


@dataclass(frozen=True, slots=True)
class PriorityStats:
    """The queue and the drop counters of one priority level."""

    priority: int
    depth: int
    bytes: int
    dropped_quota: int
    expired: int
    dead_lettered: int


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """A snapshot for metrics and the agent's reports to the hub."""

    depth: int  # records queued (including expired ones not yet purged)
    bytes: int  # payload bytes queued; the quota counts these
    max_bytes: int
    oldest_age_s: float | None  # age of the lowest-seq record; None when empty
    dropped_quota: int
    expired: int
    dead_lettered: int
    by_priority: tuple[PriorityStats, ...]  # index i is priority i, all levels present
    drops: tuple[DropCount, ...]  # per reason, stream and priority, sorted
    next_seq: int
    # True when open() found the database corrupt, moved it to corrupt_file and
    # started empty: the records in it were lost to the uplink.
    was_reset_after_corruption: bool
    corrupt_file: Path | None


def check_item(item: OutboxItem, *, max_bytes: int) -> None:
    """Raise RecordRejectedError unless the item can be queued."""
    stream = item.stream
    if not isinstance(stream, str) or not 0 < len(stream) <= MAX_STREAM_LEN:
        raise RecordRejectedError("stream", f"expected 1..{MAX_STREAM_LEN} characters")
    if STREAM_RE.fullmatch(stream) is None:
        raise RecordRejectedError("stream", f"expected {STREAM_RE.pattern}, got {stream!r}")
    priority = item.priority
    if type(priority) is not int or not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise RecordRejectedError(
            "priority", f"expected an int in {MIN_PRIORITY}..{MAX_PRIORITY}, got {priority!r}"
        )
    ttl_s = item.ttl_s
    if (
        not isinstance(ttl_s, int | float)
        or isinstance(ttl_s, bool)
        or not math.isfinite(ttl_s)
        or not 0 < ttl_s <= MAX_TTL_S
    ):
        raise RecordRejectedError(
            "ttl_s", f"expected seconds in (0, {MAX_TTL_S:.0f}], got {ttl_s!r}"
        )
    payload = item.payload
    if not isinstance(payload, bytes):
        raise RecordRejectedError("payload", f"expected bytes, got {type(payload).__name__}")
    limit = min(MAX_RECORD_BYTES, max_bytes)
    if len(payload) > limit:
        # Larger than the whole quota can never be queued; larger than a
        # record may be is a producer bug. Either way: refuse, loudly.
        raise RecordRejectedError(
            "payload", f"expected at most {limit} bytes, got {len(payload)} (stream {stream})"
        )
    try:
        # The uplink embeds payloads verbatim in the batch JSON, so one bad
        # payload here would poison a whole batch later: refuse it now.
        value = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise RecordRejectedError(
            "payload", f"expected UTF-8 JSON text (stream {stream}): {exc}"
        ) from exc
    # Fewer brackets than the limit cannot nest deeper: most payloads stop here.
    if payload.count(b"[") + payload.count(b"{") > MAX_PAYLOAD_DEPTH and is_nested_deeper(
        value, MAX_PAYLOAD_DEPTH
    ):
        # The hub refuses it (HTTP 400): better the producer hears it now.
        raise RecordRejectedError(
            "payload", f"expected JSON nested at most {MAX_PAYLOAD_DEPTH} deep (stream {stream})"
        )
