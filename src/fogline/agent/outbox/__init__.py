"""The agent's durable store-and-forward buffer for records bound to the hub.

A SQLite (WAL, synchronous=FULL) queue in the agent's data dir. A record is
on disk when `put`/`put_many` returns and leaves only through `ack` (the hub
stored it), `dead_letter` (the hub refuses it for good), its TTL, or the
byte quota (lowest priority, oldest first). Every departure other than
`ack` is counted per reason, stream and priority, across restarts.

Seqs increase and are never reused, even across deleted or corrupt
databases (see `_seqfloor`), because the hub stores each (device, stream,
seq) once.

Errors:

    FoglineError
      OutboxError             base of the outbox's errors
        RecordRejectedError   the caller's record is invalid: field, expected vs actual;
                              nothing of its batch was written
        OutboxStorageError    the disk or SQLite failed, or the outbox is closed;
                              the operation did not happen
"""

from ._errors import OutboxError, OutboxStorageError, RecordRejectedError
from ._models import (
    MAX_PRIORITY,
    MAX_RECORD_BYTES,
    MAX_STREAM_LEN,
    MAX_TTL_S,
    MIN_PRIORITY,
    STREAM_RE,
    DropCount,
    DropReason,
    OutboxItem,
    OutboxRecord,
    OutboxStats,
    PriorityStats,
)
from ._outbox import Outbox

__all__ = [
    "MAX_PRIORITY",
    "MAX_RECORD_BYTES",
    "MAX_STREAM_LEN",
    "MAX_TTL_S",
    "MIN_PRIORITY",
    "STREAM_RE",
    "DropCount",
    "DropReason",
    "Outbox",
    "OutboxError",
    "OutboxItem",
    "OutboxRecord",
    "OutboxStats",
    "OutboxStorageError",
    "PriorityStats",
    "RecordRejectedError",
]
