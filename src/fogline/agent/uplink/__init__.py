"""The loop that drains the agent's outbox to the hub, and its wire format.

`Uplink.run` reads `Outbox.next_batch` (highest priority, then oldest),
hands it to a `HubTransport`, and acks only what the hub stored. Outages back
off with full jitter; the hub stores each (device, stream, seq) once, so a
batch resent after a lost acknowledgement never duplicates. Records the hub
refuses for good are isolated by splitting the batch and dead-lettered.

`HttpHubTransport` is the real transport (POST /v1/telemetry); its answers
go through fogline.hubclient's one mapping of hub answers to errors. It sends
batch format 2 (columns per stream, fogline.protocol.encode_columns) once the
hub names it in `Accept-Post`, format 1 otherwise. Urgent records (priority
8 and 9) leave in a request of their own, ahead of the rest of their batch.

Errors:

    FoglineError
      UplinkError            base of the uplink's own errors
        BatchRejectedError   the hub refuses the data (4xx): dead-letter, never retry
      HubError               fogline.hubclient's, raised by transports:
        HubUnreachableError  network, TLS, timeout, 408, 429, 5xx: the batch waits,
                             retried with backoff (and the hub's Retry-After)
        HubRefusedError      401/403: fixed without touching the data, so the batch waits

    (BatchFormatError, for a malformed or oversized batch, lives with the
    codec in fogline.protocol and is re-exported here.)
"""

from fogline.agent._backoff import Backoff
from fogline.hubclient import HubRefusedError, HubUnreachableError
from fogline.protocol import (
    BatchFormatError,
    BatchRecord,
    EncodableRecord,
    decode_batch,
    encode_batch,
)

from ._errors import BatchRejectedError, UplinkError
from ._http import HttpHubTransport
from ._transport import HubTransport, MemoryHubTransport
from ._uplink import Uplink, UplinkCounters

__all__ = [
    "Backoff",
    "BatchFormatError",
    "BatchRecord",
    "BatchRejectedError",
    "EncodableRecord",
    "HttpHubTransport",
    "HubRefusedError",
    "HubTransport",
    "HubUnreachableError",
    "MemoryHubTransport",
    "Uplink",
    "UplinkCounters",
    "UplinkError",
    "decode_batch",
    "encode_batch",
]
