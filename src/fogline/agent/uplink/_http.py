"""The uplink's real transport: zstd batches POSTed to the hub over mTLS."""

import asyncio
from collections.abc import Sequence

import httpx

from fogline.agent.outbox import OutboxRecord
from fogline.hubclient import HubRejectedError, error_for_response, map_transport_errors
from fogline.protocol import COLUMNS_MEDIA_TYPE, BatchFormatError, encode_batch, encode_columns

from ._errors import BatchRejectedError

_FORMAT_1_HEADERS = {"content-type": "application/json", "content-encoding": "zstd"}
_FORMAT_2_HEADERS = {"content-type": COLUMNS_MEDIA_TYPE}


class HttpHubTransport:
    """POST /v1/telemetry; the hub stores each (device, stream, seq) once.

    The answer is read through fogline.hubclient's one mapping: a transient
    failure (HubUnreachableError) and a refused identity (HubRefusedError,
    401/403: fixed by a renewed or re-enabled identity, not by touching the
    data) leave the records queued; any other 4xx is the data's fault and
    becomes BatchRejectedError, which dead-letters them.

    Batches go in format 1 until the hub names format 2 in an answer's
    `Accept-Post` (every answer to an upload from a hub that reads it), then
    in format 2. A format-2 batch the hub refuses with a 4xx is sent again
    at once in format 1 and the transport stays on format 1 until the hub
    names format 2 again: a hub rolled back to a version without it, or a
    fault in the columns, costs a request, never a record.
    """

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        """`client` has the hub's base URL and the node's mTLS identity; `url` names the hub."""
        self._client, self._url = client, url
        self._columns = False
        # Compressed body bytes sent, by format ("1", "2"), resends included:
        # what the uplink costs on the wire before HTTP and TLS.
        self.body_bytes: dict[str, int] = {"1": 0, "2": 0}

    async def send_batch(self, records: Sequence[OutboxRecord]) -> None:
        """See HubTransport.send_batch."""
        if self._columns:
            try:
                # Columns and zstd level 19 take milliseconds per thousand
                # records: off the event loop, which carries local actions.
                body = await asyncio.to_thread(encode_columns, records)
            except BatchFormatError:
                body = b""  # a payload format 2 cannot carry: format 1 embeds it as it is
            if body:
                error = await self._post(body, "2")
                if error is None:
                    return
                if not isinstance(error, HubRejectedError):
                    raise error
                self._columns = False
        error = await self._post(encode_batch(records), "1")
        if error is None:
            return
        if isinstance(error, HubRejectedError):
            raise BatchRejectedError(error.status, error.message[:300]) from error
        raise error

    async def _post(self, body: bytes, version: str) -> Exception | None:
        headers = _FORMAT_2_HEADERS if version == "2" else _FORMAT_1_HEADERS
        self.body_bytes[version] += len(body)
        with map_transport_errors(self._url):
            response = await self._client.post("/v1/telemetry", content=body, headers=headers)
        accepted = response.headers.get("accept-post", "")
        self._columns = COLUMNS_MEDIA_TYPE in {part.strip() for part in accepted.split(",")}
        return error_for_response(response)
