"""The uplink's real transport: zstd batches POSTed to the hub over mTLS."""

from collections.abc import Sequence

import httpx

from fogline.agent.uplink import BatchRejectedError, EncodableRecord, HubUnreachableError
from fogline.protocol import encode_batch

from ._hublink import HubLink


class HttpHubTransport:
    """POST /v1/telemetry; the hub stores each (device, stream, seq) once."""

    def __init__(self, link: HubLink) -> None:
        self._link = link

    async def send_batch(self, records: Sequence[EncodableRecord]) -> None:
        body = encode_batch(records)
        try:
            response = await self._link.http.post(
                "/v1/telemetry",
                content=body,
                headers={"content-type": "application/json", "content-encoding": "zstd"},
            )
        except httpx.TransportError as exc:
            raise HubUnreachableError(f"{self._link.url}: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status < 300:
            return
        # 401/403 are fixed without touching the data (a renewed or re-enabled
        # identity), so the records wait instead of being dead-lettered.
        if status >= 500 or status in (401, 403, 408, 429):
            raise HubUnreachableError(f"{self._link.url}/v1/telemetry: HTTP {status}")
        raise BatchRejectedError(status, response.text[:300])
