"""What happened to a call to the hub, as one HubError: one mapping for everyone.

In the style of httpx's own `map_httpcore_exceptions`: a table from foreign
exception families to ours, applied at the boundary with `raise ... from`,
and one table of statuses.

    status          error                 meaning
    2xx             none                  done
    408, 429, 5xx   HubUnreachableError   transient: retry with backoff, honour Retry-After
    401, 403        HubRefusedError       who is asking is refused: revoked, bad token or claim
    other 4xx       HubRejectedError      the request is wrong: a bug to report (or user input)
    1xx, 3xx, 6xx+  HubUnreachableError   no usable answer (a proxy, a captive portal)

304 is not an error where a caller asked for it (If-None-Match): such a
caller looks at it before asking this module.
"""

import contextlib
import ssl
from collections.abc import Iterator
from typing import Final

import httpx

from ._errors import (
    HubError,
    HubNotTrustedError,
    HubRefusedError,
    HubRejectedError,
    HubUnreachableError,
)
from ._retry_after import parse_retry_after

# First match wins: the most specific family first. Every one of them is
# transient: the request may not have reached the hub, or its answer was
# lost, and every call the agent and the CLI make is safe to repeat.
HTTPX_EXC_MAP: Final[tuple[tuple[type[Exception], type[HubError]], ...]] = (
    (httpx.TimeoutException, HubUnreachableError),  # connect, read, write, pool
    (httpx.NetworkError, HubUnreachableError),  # connect (TLS included), read, write, close
    (httpx.ProtocolError, HubUnreachableError),  # a hub or proxy that broke HTTP mid-answer
    (httpx.ProxyError, HubUnreachableError),  # the proxy in between failed
    (httpx.UnsupportedProtocol, HubUnreachableError),  # not http(s): says so, like the rest
    (httpx.DecodingError, HubUnreachableError),  # a body its own encoding does not decode
    (httpx.TooManyRedirects, HubUnreachableError),  # never followed; a proxy's loop
    (httpx.RequestError, HubUnreachableError),  # any other failure to get an answer
)
# httpx.HTTPStatusError (raise_for_status) is decided by its response's status.
# Not mapped, so they surface as the bugs they are: httpx.InvalidURL,
# httpx.CookieConflict and httpx.StreamError (a response read twice or not at all).

_TRANSIENT_4XX: Final = frozenset({408, 429})
_REFUSED: Final = frozenset({401, 403})
_MAX_BODY_CHARS: Final = 200


def error_class(status: int) -> type[HubError] | None:
    """The error an answer with `status` means; None for success (2xx)."""
    if 200 <= status <= 299:
        return None
    if status in _REFUSED:
        return HubRefusedError
    if 400 <= status <= 499 and status not in _TRANSIENT_4XX:
        return HubRejectedError
    return HubUnreachableError


def is_transient_status(status: int) -> bool:
    """Whether an answer with `status` is worth retrying (408, 429, 5xx, no usable answer)."""
    return error_class(status) is HubUnreachableError


def _where(response: httpx.Response) -> str:
    try:
        return str(response.request.url.copy_with(query=None, fragment=None))
    except RuntimeError:  # a response made without a request (tests)
        return "the hub"


def _hub_body(response: httpx.Response) -> tuple[str, str] | None:
    """The hub's own `{"error", "message"}`, if the body is one and was read."""
    try:
        data = response.json()
    except (ValueError, httpx.ResponseNotRead, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or "error" not in data:
        return None
    return str(data.get("error"))[:64], str(data.get("message"))[:1000]


def _body_text(response: httpx.Response) -> str:
    try:
        return response.text[:_MAX_BODY_CHARS].strip() or response.reason_phrase
    except (httpx.ResponseNotRead, UnicodeDecodeError):
        return response.reason_phrase


def error_for_response(response: httpx.Response) -> HubError | None:
    """The HubError an answer means (see the table above); None for a 2xx."""
    status = response.status_code
    cls = error_class(status)
    if cls is None:
        return None
    body = _hub_body(response)
    if cls is HubUnreachableError:
        said = f" ({body[0]}: {body[1]})" if body else ""
        return HubUnreachableError(
            f"{_where(response)}: HTTP {status}{said}",
            status=status,
            retry_after_s=parse_retry_after(response.headers.get("retry-after")),
        )
    code, message = body if body else ("error", _body_text(response))
    assert issubclass(cls, HubRefusedError | HubRejectedError)
    return cls(status, code, message)


def raise_for_response(response: httpx.Response) -> None:
    """Return on a 2xx; raise what any other answer means.

    Raises:
        HubUnreachableError: 408, 429, 5xx or no usable answer; retrying is safe.
        HubRefusedError: 401 or 403.
        HubRejectedError: another 4xx.
    """
    error = error_for_response(response)
    if error is not None:
        raise error


def _certificate_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate check that failed under an httpx error, if that was the cause."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # bounded: each link once
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _not_trusted(url: str, failure: ssl.SSLCertVerificationError) -> HubNotTrustedError:
    reason = str(failure.verify_message or failure.reason or failure).rstrip(".")
    lowered = reason.lower()
    is_name_mismatch = "hostname mismatch" in lowered or "ip address mismatch" in lowered
    what = "for another name" if is_name_mismatch else "that the trusted CA did not sign"
    return HubNotTrustedError(
        f"the hub at {url} has a TLS certificate {what} ({reason})",
        url=url,
        reason=reason,
        is_name_mismatch=is_name_mismatch,
    )


def error_for_exception(exc: Exception, url: str) -> HubError | None:
    """The HubError an httpx exception means; None for one that is a bug (unmapped)."""
    if isinstance(exc, httpx.HTTPStatusError):  # from raise_for_status(): its answer decides
        return error_for_response(exc.response)
    for family, cls in HTTPX_EXC_MAP:
        if isinstance(exc, family):
            failure = _certificate_failure(exc)
            if failure is not None:
                return _not_trusted(url, failure)
            return cls(f"cannot reach the hub at {url}: {type(exc).__name__}: {exc}")
    return None


@contextlib.contextmanager
def map_transport_errors(url: str) -> Iterator[None]:
    """Turn httpx's exceptions inside the block into HubErrors (see HTTPX_EXC_MAP).

    Raises:
        HubUnreachableError: a transport failure (HubNotTrustedError for a
            certificate that did not verify).
    """
    try:
        yield
    except httpx.HTTPError as exc:
        error = error_for_exception(exc, url)
        if error is None:
            raise
        raise error from exc
