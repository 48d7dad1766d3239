"""The agent's connection to the hub: enrollment, then mTLS for everything else."""

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import httpx
from pydantic import BaseModel

from fogline.hubclient import (
    HubUnreachableError,
    ResumingContext,
    map_transport_errors,
    raise_for_response,
    resuming_client_context,
)
from fogline.protocol import DesiredStateDoc, parse_desired_state

from ._identity import Identity

M = TypeVar("M", bound=BaseModel)

# Wraps the link's real transport (TLS, connection pool): the simulator's
# fault injection and byte counting (fogline.sim.FaultyTransport).
TransportWrapper: TypeAlias = Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport]


def _tls_context(ca_path: Path, identity: Identity | None) -> ResumingContext:
    # Resumes the last session with the hub: a node whose idle connection was
    # closed skips the full handshake. A new context (a renewal, a new CA
    # bundle) starts without sessions: a session carries the old certificate.
    context = resuming_client_context(ca_path)
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

    def context(self) -> ResumingContext:
        return self._context

    def reload(self) -> None:
        """Use the identity's files as they are now, for new connections."""
        self._context = _tls_context(self._identity.ca_path, self._identity)
        self.generation += 1


class _Pool:
    """One connection pool of a `_RenewingTransport` and the requests in it."""

    def __init__(self, tls: HubTls) -> None:
        self.transport = httpx.AsyncHTTPTransport(verify=tls.context())
        self.generation = tls.generation
        self.in_flight = 0  # requests sent whose response body is not closed yet
        self.retired = False
        self.closed = False

    async def close_if_idle(self) -> None:
        if self.retired and self.in_flight == 0 and not self.closed:
            self.closed = True
            await self.transport.aclose()


class _ReleasingStream(httpx.AsyncByteStream):
    """A response body that tells its pool when it is closed."""

    def __init__(self, inner: httpx.AsyncByteStream, pool: _Pool) -> None:
        self._inner, self._pool, self._released = inner, pool, False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            if not self._released:
                self._released = True
                self._pool.in_flight -= 1
                await self._pool.close_if_idle()


class _RenewingTransport(httpx.AsyncBaseTransport):
    """A connection pool that starts over with the new certificate after a
    renewal: the hub accepts the previous certificate only until it has seen
    the new one, so kept-alive connections must not outlive it.

    The pool it replaces is closed as soon as the requests in flight on it
    (a long-poll) have finished, not at once (they would fail) and not later:
    its kept-alive connections would stay open, one socket per link and
    renewal, until the hub's idle timeout closed its end (measured with
    1,000 virtual nodes, tests/sim/test_renewal.py).
    """

    def __init__(self, tls: HubTls) -> None:
        self._tls = tls
        self._pool = _Pool(tls)
        self._retired: set[_Pool] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._tls.generation != self._pool.generation:
            old, self._pool = self._pool, _Pool(self._tls)
            old.retired = True
            self._retired = {p for p in self._retired if not p.closed} | {old}
            await old.close_if_idle()
        pool = self._pool
        pool.in_flight += 1
        try:
            response = await pool.transport.handle_async_request(request)
        except BaseException:
            pool.in_flight -= 1
            await pool.close_if_idle()
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_ReleasingStream(response.stream, pool),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        for pool in (self._pool, *self._retired):
            if not pool.closed:
                pool.closed = True
                await pool.transport.aclose()

    def open_pools(self) -> int:
        """Pools not closed yet (the current one included): for tests."""
        return sum(not p.closed for p in (self._pool, *self._retired))


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
        self._timeout_s = timeout_s
        transport: httpx.AsyncBaseTransport
        if tls is not None:
            transport = _RenewingTransport(tls)
            self._context: Callable[[], ResumingContext] = tls.context
        else:
            context = _tls_context(ca_path, identity)
            transport = httpx.AsyncHTTPTransport(verify=context)
            self._context = lambda: context
        if wrap_transport is not None:
            transport = wrap_transport(transport)
        self._http = httpx.AsyncClient(base_url=self.url, transport=transport, timeout=timeout_s)

    @property
    def http(self) -> httpx.AsyncClient:
        """The underlying client, for transports with their own wire format."""
        return self._http

    def blocking_client(self) -> httpx.Client:
        """A new blocking client to the hub with the link's TLS as it is now
        (the certificate of the latest renewal; sessions resumed), for work
        done in a worker thread: the updater's downloads. Close it after use."""
        return httpx.Client(base_url=self.url, verify=self._context(), timeout=self._timeout_s)

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
