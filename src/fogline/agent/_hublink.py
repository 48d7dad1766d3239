"""The agent's connection to the hub: enrollment, then mTLS for everything else."""

import ssl
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from fogline.hubclient import HubUnreachableError, map_transport_errors, raise_for_response
from fogline.protocol import DesiredStateDoc, parse_desired_state

from ._identity import Identity

M = TypeVar("M", bound=BaseModel)


def _tls_context(ca_path: Path, identity: Identity | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_path))
    if identity is not None:
        context.load_cert_chain(str(identity.cert_path), str(identity.key_path))
    return context


class HubLink:
    """JSON calls to one hub; every failure is a fogline.hubclient HubError."""

    def __init__(
        self, url: str, ca_path: Path, identity: Identity | None = None, timeout_s: float = 30.0
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.url, verify=_tls_context(ca_path, identity), timeout=timeout_s
        )

    @property
    def http(self) -> httpx.AsyncClient:
        """The underlying client, for transports with their own wire format."""
        return self._http

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get_desired(self, etag: str | None, wait_s: float) -> DesiredStateDoc | None:
        """Long-poll for the desired state; None when it still matches `etag`.

        Raises:
            HubError: see `call`.
            DesiredStateError: the answer is not a desired state this node can
                apply (see parse_desired_state).
        """
        headers = {"if-none-match": f'"{etag}"'} if etag else {}
        with map_transport_errors(self.url):
            response = await self._http.get(
                "/v1/desired", params={"wait": wait_s}, headers=headers, timeout=wait_s + 15
            )
        if response.status_code == 304:  # asked for with If-None-Match: not an error
            return None
        raise_for_response(response)
        return parse_desired_state(response.content)

    async def call(
        self, method: str, path: str, body: BaseModel | None, reply: type[M], **kwargs: Any
    ) -> M:
        """Send `body` as JSON and parse the answer as `reply`.

        Raises:
            HubUnreachableError: network, TLS, timeout, 408, 429, 5xx or an
                unreadable reply; retrying is safe (`retry_after_s` says when).
            HubRefusedError: 401/403 (a revoked device, a bad claim).
            HubRejectedError: another 4xx: the request is wrong.
        """
        content = body.model_dump_json().encode() if body is not None else None
        headers = {"content-type": "application/json"} if content is not None else {}
        with map_transport_errors(self.url):
            response = await self._http.request(
                method, path, content=content, headers=headers, **kwargs
            )
        return self._parse(response, path, reply)

    def _parse(self, response: httpx.Response, path: str, reply: type[M]) -> M:
        raise_for_response(response)
        try:
            return reply.model_validate_json(response.content)
        except ValueError as exc:
            # A 2xx that is not the hub's answer: a proxy's page, a cut body.
            raise HubUnreachableError(f"{self.url}{path}: unexpected reply: {exc}") from exc
