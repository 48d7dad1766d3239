"""The error tree of talking to the hub (drawn in the package docstring)."""

from fogline._errors import FoglineError


class HubError(FoglineError):
    """Base of every error a call to the hub ends in.

    `retry_after_s` is how long the hub (or a proxy in front of it) asked the
    caller to wait, from its Retry-After header; None when it said nothing.
    Only transient errors carry one.
    """

    retry_after_s: float | None = None


class HubUnreachableError(HubError):
    """No answer, or a transient one: connection, TLS, timeout, 408, 429, 5xx, an
    unreadable reply. Retrying with backoff is safe and may succeed."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.retry_after_s = status, retry_after_s


class HubNotTrustedError(HubUnreachableError):
    """The hub's TLS certificate did not verify: signed by another CA, or for
    another name. Transient to a daemon (a hub mid-rotation heals), and named
    apart so the CLI can say which flag fixes it."""

    def __init__(self, message: str, *, url: str, reason: str, is_name_mismatch: bool) -> None:
        super().__init__(message)
        self.url, self.reason, self.is_name_mismatch = url, reason, is_name_mismatch


class TrustBundleError(HubError):
    """The CA bundle to verify the hub with cannot be read or holds no PEM
    certificate (`--ca`, or the node's enrolled copy). Not transient: the
    file has to be fixed."""


class HubStatusError(HubError):
    """The hub answered a 4xx that retrying will not change; the message is its own."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"hub refused ({status} {code}): {message}")
        self.status, self.code, self.message = status, code, message


class HubRefusedError(HubStatusError):
    """401 or 403: who is asking is refused (a revoked device, a bad token or
    claim). It heals only when the credentials or the hub change."""


class HubRejectedError(HubStatusError):
    """Another 4xx: the request itself is wrong (bad body, unknown name, a
    conflict). From a daemon, a bug to report; from the CLI, the operator's input."""
