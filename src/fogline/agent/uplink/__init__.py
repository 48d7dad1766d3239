"""The loop that drains the agent's outbox to the hub, and its wire format.

`Uplink.run` reads `Outbox.next_batch` (highest priority, then oldest),
hands it to a `HubTransport`, and acks only what the hub stored. Outages back
off with full jitter; the hub stores each (device, stream, seq) once, so a
batch resent after a lost acknowledgement never duplicates. Records the hub
refuses for good are isolated by splitting the batch and dead-lettered.

Errors:

    FoglineError
      UplinkError            base of the uplink's errors
        HubUnreachableError  network, TLS, timeout, 5xx, 401/403: retrying is safe
        BatchRejectedError   the hub refuses the data (4xx): dead-letter, never retry

    (BatchFormatError, for a malformed or oversized batch, lives with the
    codec in fogline.protocol and is re-exported here.)
"""

from fogline.agent._backoff import Backoff
from fogline.protocol import (
    BatchFormatError,
    BatchRecord,
    EncodableRecord,
    decode_batch,
    encode_batch,
)

from ._errors import BatchRejectedError, HubUnreachableError, UplinkError
from ._transport import HubTransport, MemoryHubTransport
from ._uplink import Uplink, UplinkCounters

__all__ = [
    "Backoff",
    "BatchFormatError",
    "BatchRecord",
    "BatchRejectedError",
    "EncodableRecord",
    "HubTransport",
    "HubUnreachableError",
    "MemoryHubTransport",
    "Uplink",
    "UplinkCounters",
    "UplinkError",
    "decode_batch",
    "encode_batch",
]
