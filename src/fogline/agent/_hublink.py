"""The agent's connection to the hub: enrollment, then mTLS for everything else."""

import ssl
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from fogline.protocol import DesiredStateDoc

from ._errors import HubRefusedError, HubUnreachableError
from ._identity import Identity

M = TypeVar("M", bound=BaseModel)


def _tls_context(ca_path: Path, identity: Identity | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_path))
    if identity is not None:
        context.load_cert_chain(str(identity.cert_path), str(identity.key_path))
    return context


class HubLink:
    """JSON calls to one hub; transport failures and 5xx become HubUnreachableError."""

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
        """Long-poll for the desired state; None when it still matches `etag`."""
        headers = {"if-none-match": f'"{etag}"'} if etag else {}
        try:
            response = await self._http.get(
                "/v1/desired", params={"wait": wait_s}, headers=headers, timeout=wait_s + 15
            )
        except httpx.TransportError as exc:
            raise HubUnreachableError(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 304:
            return None
        return self._parse(response, "/v1/desired", DesiredStateDoc)

    async def call(
        self, method: str, path: str, body: BaseModel | None, reply: type[M], **kwargs: Any
    ) -> M:
        content = body.model_dump_json().encode() if body is not None else None
        headers = {"content-type": "application/json"} if content is not None else {}
        try:
            response = await self._http.request(
                method, path, content=content, headers=headers, **kwargs
            )
        except httpx.TransportError as exc:
            raise HubUnreachableError(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        return self._parse(response, path, reply)

    def _parse(self, response: httpx.Response, path: str, reply: type[M]) -> M:
        if response.status_code >= 500:
            raise HubUnreachableError(f"{self.url}{path}: HTTP {response.status_code}")
        if response.status_code >= 400:
            try:
                data = response.json()
                code, message = str(data.get("error")), str(data.get("message"))
            except ValueError:
                code, message = "error", response.text[:200]
            raise HubRefusedError(response.status_code, code, message)
        try:
            return reply.model_validate_json(response.content)
        except ValueError as exc:
            raise HubUnreachableError(f"{self.url}{path}: unexpected reply: {exc}") from exc
