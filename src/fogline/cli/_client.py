"""The operator side's HTTP client: a thin wrapper over httpx for the hub's API.

Its errors are fogline.hubclient's (HubError and below), the same tree and
the same mapping of answers to errors as the agent's.
"""

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from fogline._errors import FoglineError
from fogline.hubclient import (
    HubNotTrustedError,
    HubUnreachableError,
    map_transport_errors,
    raise_for_response,
)


def _not_trusted(error: HubNotTrustedError, ca: Path | None) -> str:
    """The CLI's advice on a certificate that did not verify: which flag fixes it."""
    if error.is_name_mismatch:
        return (
            f"the hub at {error.url} has a TLS certificate for another name ({error.reason}): "
            "use the address it was issued for, or restart the hub with --san NAME for this one"
        )
    where = f"the CA in {ca}" if ca is not None else "the system's CAs (no --ca given)"
    return (
        f"the hub at {error.url} has a TLS certificate that {where} did not sign "
        f"({error.reason}): pass --ca or set FOGLINE_CA to the hub's own CA certificate, "
        "DIR/ca.pem in the hub's --data-dir"
    )


@dataclass(frozen=True, slots=True)
class HubConnection:
    url: str
    token: str | None
    ca: Path | None

    def client(self, timeout_s: float = 30.0) -> "HubClient":
        return HubClient(self, timeout_s)


class HubClient:
    """Calls the operator API; every failure becomes one FoglineError."""

    def __init__(self, conn: HubConnection, timeout_s: float) -> None:
        if conn.ca is not None and not conn.ca.is_file():
            raise FoglineError(f"{conn.ca}: CA file not found (--ca / FOGLINE_CA)")
        headers = {"authorization": f"Bearer {conn.token}"} if conn.token else {}
        self._url, self._ca = conn.url.rstrip("/"), conn.ca
        self._http = httpx.Client(
            base_url=self._url,
            headers=headers,
            verify=ssl.create_default_context(cafile=str(conn.ca) if conn.ca else None),
            timeout=timeout_s,
        )

    def __enter__(self) -> "HubClient":
        return self

    def __exit__(self, *_exc: object) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer of one call (None for an empty body).

        Raises:
            HubNotTrustedError: the hub's certificate did not verify (with advice).
            HubUnreachableError: network, timeout, 408, 429, 5xx, an unreadable reply.
            HubRefusedError: 401/403: the token is missing, wrong or lacks the role.
            HubRejectedError: another 4xx: the hub's message says what is wrong.
        """
        try:
            with map_transport_errors(self._url):
                response = self._http.request(method, path, **kwargs)
        except HubNotTrustedError as exc:
            raise HubNotTrustedError(
                _not_trusted(exc, self._ca),
                url=exc.url,
                reason=exc.reason,
                is_name_mismatch=exc.is_name_mismatch,
            ) from exc.__cause__
        raise_for_response(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:  # a 2xx that is not the hub's: a proxy's page
            raise HubUnreachableError(
                f"{self._url}{path}: HTTP {response.status_code}: not the hub's JSON answer"
            ) from exc

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)
