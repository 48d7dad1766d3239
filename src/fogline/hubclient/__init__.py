"""Talking to the hub over HTTP: one error tree, and one mapping from what
happened to a call to it, for the agent (enrollment, reports, sync), the
uplink, the updater and the CLI; and a TLS context that resumes its last
session with the hub (`resuming_client_context`), so a reconnect skips the
full handshake.

    with map_transport_errors(url):
        response = await client.post("/v1/report", ...)
    raise_for_response(response)            # or error_for_response() to decide

Transient errors carry the hub's Retry-After (`retry_after_s`, bounded);
the agent's Backoff waits at least that long, with jitter.

Errors:

    FoglineError
      HubError                  base: a call to the hub did not succeed
        HubUnreachableError     no answer, or a transient one: connection, TLS,
                                timeout, 408, 429, 5xx, an unreadable reply;
                                retry with backoff (`retry_after_s`, `status`)
          HubNotTrustedError    the hub's TLS certificate did not verify
        TrustBundleError        the CA bundle to verify the hub with is
                                unreadable or not PEM certificates
        HubStatusError          a 4xx that retrying will not change: status, code,
                                message (the hub's own)
          HubRefusedError       401/403: who is asking is refused (revoked
                                device, bad token or claim)
          HubRejectedError      another 4xx: the request is wrong; from a daemon
                                a bug to report, from the CLI the operator's input
"""

from ._errors import (
    HubError,
    HubNotTrustedError,
    HubRefusedError,
    HubRejectedError,
    HubStatusError,
    HubUnreachableError,
    TrustBundleError,
)
from ._mapping import (
    HTTPX_EXC_MAP,
    error_class,
    error_for_exception,
    error_for_response,
    is_transient_status,
    map_transport_errors,
    raise_for_response,
)
from ._retry_after import MAX_RETRY_AFTER_S, parse_retry_after
from ._sessions import ResumingContext, resuming_client_context

__all__ = [
    "HTTPX_EXC_MAP",
    "MAX_RETRY_AFTER_S",
    "HubError",
    "HubNotTrustedError",
    "HubRefusedError",
    "HubRejectedError",
    "HubStatusError",
    "HubUnreachableError",
    "ResumingContext",
    "TrustBundleError",
    "error_class",
    "error_for_exception",
    "error_for_response",
    "is_transient_status",
    "map_transport_errors",
    "parse_retry_after",
    "raise_for_response",
    "resuming_client_context",
]
