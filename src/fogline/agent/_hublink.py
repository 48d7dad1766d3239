"""The agent's connection to the hub: enrollment, then mTLS for everything else."""

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import httpx
from pydantic import BaseModel

from fogline.hubclient import HubUnreachableError, map_transport_errors, raise_for_response
from fogline.protocol import DesiredStateDoc, parse_desired_state

from ._identity import Identity

M = TypeVar("M", bound=BaseModel)

# Wraps the link's real transport (TLS, connection pool): the simulator's
# fault injection and byte counting (fogline.sim.FaultyTransport).
TransportWrapper: TypeAlias = Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport]


def _tls_context(ca_path: Path, identity: Identity | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_path))
    if identity is not None:
        context.load_cert_chain(str(identity.cert_path), str(identity.key_path))
    return context


class HubTls:
    """The node's TLS to the hub (its certificate, the trust bundle), shared
    by every link and built again after a renewal (`reload`)."""

    def __init__(self, identity: Identity) -> None:
        self._identity = identity
        self._context = _tls_context(identity.ca_path, identity)
        self.generation = 0

    def context(self) -> ssl.SSLContext:
        return self._context

    def reload(self) -> None:
        """Use the identity's files as they are now, for new connections."""
        self._context = _tls_context(self._identity.ca_path, self._identity)
        self.generation += 1


class _RenewingTransport(httpx.AsyncBaseTransport):
    """A connection pool that starts over with the new certificate after a
    renewal: the hub accepts the previous certificate only until it has seen
    the new one, so kept-alive connections must not outlive it.

    The pool it replaces is closed at the next renewal, not at once: a
    long-poll in flight on it finishes instead of failing.
    """

    def __init__(self, tls: HubTls) -> None:
        self._tls = tls
        self._generation = tls.generation
        self._pool = httpx.AsyncHTTPTransport(verify=tls.context())
        self._retired: httpx.AsyncHTTPTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._tls.generation != self._generation:
            if self._retired is not None:
                await self._retired.aclose()
            self._retired = self._pool
            self._pool = httpx.AsyncHTTPTransport(verify=self._tls.context())
            self._generation = self._tls.generation
        return await self._pool.handle_async_request(request)

    async def aclose(self) -> None:
        await self._pool.aclose()
        if self._retired is not None:
            await self._retired.aclose()


class HubLink:
    """JSON calls to one hub; every failure is a fogline.hubclient HubError.

    With `tls` (an enrolled node), the link follows the node's renewals;
    otherwise it uses `ca_path` and `identity` as they are now.
    """

    def __init__(
        self,
        url: str,
        ca_path: Path,
        identity: Identity | None = None,
        timeout_s: float = 30.0,
        *,
        tls: HubTls | None = None,
        wrap_transport: TransportWrapper | None = None,
    ) -> None:
        """`wrap_transport`, if given, wraps the link's own transport (same
        TLS settings, renewals followed): the simulator's fault injection."""
        self.url = url.rstrip("/")
        transport: httpx.AsyncBaseTransport
        if tls is not None:
            transport = _RenewingTransport(tls)
        else:
            transport = httpx.AsyncHTTPTransport(verify=_tls_context(ca_path, identity))
        if wrap_transport is not None:
            transport = wrap_transport(transport)
        self._http = httpx.AsyncClient(base_url=self.url, transport=transport, timeout=timeout_s)

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
