"""The operator side's HTTP client: a thin wrapper over httpx for the hub's API."""

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from fogline._errors import FoglineError


class HubUnreachableError(FoglineError):
    """The network failed; retrying is safe."""


class HubNotTrustedError(FoglineError):
    """The hub's TLS certificate did not verify: the wrong or no CA, or another name."""


def _verification_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate check that failed under an httpx error, if that was the cause."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # bounded: each link once
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _not_trusted(url: str, ca: Path | None, failure: ssl.SSLCertVerificationError) -> str:
    reason = str(failure.verify_message or failure.reason or failure).rstrip(".")
    if "hostname mismatch" in reason.lower() or "ip address mismatch" in reason.lower():
        return (
            f"the hub at {url} has a TLS certificate for another name ({reason}): use the "
            "address it was issued for, or restart the hub with --san NAME for this one"
        )
    where = f"the CA in {ca}" if ca is not None else "the system's CAs (no --ca given)"
    return (
        f"the hub at {url} has a TLS certificate that {where} did not sign ({reason}): "
        "pass --ca or set FOGLINE_CA to the hub's own CA certificate, DIR/ca.pem in the "
        "hub's --data-dir"
    )


class HubRefusedError(FoglineError):
    """The hub answered with an error; the message is the hub's own."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"hub refused ({status} {code}): {message}")
        self.status, self.code, self.message = status, code, message


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
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            failure = _verification_failure(exc)
            if failure is not None:
                raise HubNotTrustedError(_not_trusted(self._url, self._ca, failure)) from exc
            raise HubUnreachableError(f"cannot reach the hub at {self._url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
                code, message = str(body.get("error")), str(body.get("message"))
            except ValueError:
                code, message = "error", response.text[:200]
            raise HubRefusedError(response.status_code, code, message)
        return response.json() if response.content else None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)
