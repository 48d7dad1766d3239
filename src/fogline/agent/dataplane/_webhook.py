"""`HttpxWebhookCaller`: webhook calls that no receiver can turn against the node.

A webhook receiver is another party's server; the node must survive any
answer, or none:

- One deadline per call, around everything (resolution, connection,
  request, response): a receiver that drips a byte every few seconds is cut
  off at the deadline, not held forever by a per-read timeout.
- The response body is read raw (never decompressed) up to
  `MAX_RESPONSE_BYTES`, then the connection is dropped: an endless or huge
  answer costs the node 64 KiB, not gigabytes. Only the status matters.
- The destination is resolved once and every address checked with
  `address_refusal` (unless the action says `allowPrivateNetwork: true`);
  the call then connects to a checked address, so a DNS answer that changes
  between check and connect (rebinding) cannot steer it. The Host header,
  TLS SNI and the certificate check still use the URL's name.
- No proxy from the environment, no redirects (a 3xx could point anywhere),
  no kept-alive connections (a pooled connection verified for one name
  would otherwise carry a call meant for another name on the same address).

How many calls run at once is the DataPlane's business (global and
per-destination caps).
"""

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import httpx

from .._errors import AgentError
from ._addresses import IPAddress, address_refusal, host_refusal, parse_ip_literal

MAX_RESPONSE_BYTES: Final = 64 * 1024
# A name with more addresses than this is tried on its first few only.
MAX_ADDRESSES: Final = 4

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


class WebhookError(AgentError):
    """A webhook call failed: network, HTTP status or deadline. Counted, never fatal."""


class WebhookRefusedError(WebhookError):
    """The destination is not public and the action does not allow private networks;
    nothing was sent."""


@dataclass(frozen=True, slots=True)
class WebhookCall:
    """One webhook delivery, as the pipeline's action describes it."""

    url: str
    method: str
    body: bytes
    timeout_s: float = 10.0
    allow_private_network: bool = False


def webhook_target(url: str) -> tuple[httpx.URL, str]:
    """`url` parsed by the same parser that sends the request, and its host as
    the connection would use it (IDNA-encoded, IPv6 without brackets).

    Raises:
        WebhookRefusedError: not a valid http(s) URL.
    """
    try:
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeDecodeError) as exc:
        raise WebhookRefusedError(f"invalid URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise WebhookRefusedError(f"scheme {parsed.scheme!r} is not http or https")
    return parsed, host


def loggable_url(url: str) -> str:
    """`url` without user info and query, which may carry credentials."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparsable URL)"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}{parts.path}"


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to for TCP, in the resolver's order, once each.

    Raises:
        WebhookError: the name does not resolve.
    """
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except OSError as exc:
        raise WebhookError(f"{host}: cannot resolve: {exc}") from exc
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = parse_ip_literal(str(sockaddr[0]))
        if address is not None and address not in found:
            found.append(address)
    if not found:
        raise WebhookError(f"{host}: resolves to no address")
    return found


class HttpxWebhookCaller:
    """The node's WebhookCaller (see the module docstring for its bounds)."""

    def __init__(
        self,
        *,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        resolver: Resolver = resolve,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`resolver` and `tls` (the CAs to trust; default: the system's) are
        for tests."""
        self._max_response_bytes = max_response_bytes
        self._resolve = resolver
        self._tls = tls
        self._http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        # Made at the first call: its TLS context holds certifi's CA bundle,
        # 1.3 MB resident in every node, most of which never call a webhook
        # (BENCHMARKS.md, "Agent idle RSS").
        if self._http is None:
            self._http = httpx.AsyncClient(
                verify=self._tls if self._tls is not None else True,
                trust_env=False,
                follow_redirects=False,
                limits=httpx.Limits(max_keepalive_connections=0),
            )
        return self._http

    async def call(self, request: WebhookCall) -> None:
        """Deliver `request`; returns once a 2xx status arrived.

        Raises:
            WebhookRefusedError: the destination is not allowed; nothing was sent.
            WebhookError: resolution, connection or HTTP failure, a non-2xx
                status, or the deadline passed.
        """
        try:
            async with asyncio.timeout(request.timeout_s):
                await self._deliver(request)
        except TimeoutError:
            raise WebhookError(f"no answer within the {request.timeout_s:g}s deadline") from None

    async def _deliver(self, request: WebhookCall) -> None:
        url, host = webhook_target(request.url)
        port = url.port or (443 if url.scheme == "https" else 80)
        addresses = await self._addresses(host, port, check=not request.allow_private_network)
        headers = {"content-type": "application/json", "host": url.netloc.decode("ascii")}
        extensions = {}
        if url.scheme == "https" and parse_ip_literal(host) is None:
            extensions["sni_hostname"] = host  # verified against the name, not the address
        last: Exception | None = None
        for address in addresses[:MAX_ADDRESSES]:
            try:
                await self._send(url.copy_with(host=str(address)), request, headers, extensions)
                return
            except httpx.ConnectError as exc:  # this address is down: try the next one
                last = exc
            except httpx.HTTPError as exc:
                raise WebhookError(f"{type(exc).__name__}: {exc}") from exc
        raise WebhookError(f"cannot connect: {last}") from last

    async def _addresses(self, host: str, port: int, *, check: bool) -> list[IPAddress]:
        why = host_refusal(host) if check else None
        if why:
            raise WebhookRefusedError(why)
        literal = parse_ip_literal(host)
        if literal is not None:
            return [literal]
        addresses = await self._resolve(host, port)
        if check:
            for address in addresses:  # all of them: the connection may use any
                why = address_refusal(address)
                if why:
                    raise WebhookRefusedError(f"{host} resolves to {why}")
        return addresses

    async def _send(
        self,
        url: httpx.URL,
        request: WebhookCall,
        headers: dict[str, str],
        extensions: dict[str, str],
    ) -> None:
        async with self._client().stream(
            request.method,
            url,
            content=request.body,
            headers=headers,
            extensions=extensions,
            timeout=request.timeout_s,
        ) as response:
            if not response.is_success:
                raise WebhookError(f"HTTP {response.status_code}")
            received = 0
            # Raw: a gzip answer is never inflated. Leaving the block unread
            # closes the connection, whatever the receiver still wants to send.
            async for chunk in response.aiter_raw():
                received += len(chunk)
                if received >= self._max_response_bytes:
                    break

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
