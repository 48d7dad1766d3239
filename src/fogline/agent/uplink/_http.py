"""The uplink's real transport: zstd batches POSTed to the hub over mTLS."""

from collections.abc import Sequence

import httpx

from fogline.agent.outbox import OutboxRecord
from fogline.hubclient import HubRejectedError, error_for_response, map_transport_errors
from fogline.protocol import encode_batch

from ._errors import BatchRejectedError


class HttpHubTransport:
    """POST /v1/telemetry; the hub stores each (device, stream, seq) once.

    The answer is read through fogline.hubclient's one mapping: a transient
    failure (HubUnreachableError) and a refused identity (HubRefusedError,
    401/403: fixed by a renewed or re-enabled identity, not by touching the
    data) leave the records queued; any other 4xx is the data's fault and
    becomes BatchRejectedError, which dead-letters them.
    """

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        """`client` has the hub's base URL and the node's mTLS identity; `url` names the hub."""
        self._client, self._url = client, url

    async def send_batch(self, records: Sequence[OutboxRecord]) -> None:
        """See HubTransport.send_batch."""
        body = encode_batch(records)
        with map_transport_errors(self._url):
            response = await self._client.post(
                "/v1/telemetry",
                content=body,
                headers={"content-type": "application/json", "content-encoding": "zstd"},
            )
        error = error_for_response(response)
        if error is None:
            return
        if isinstance(error, HubRejectedError):
            raise BatchRejectedError(error.status, error.message[:300]) from error
        raise error
