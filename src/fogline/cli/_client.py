"""The operator side's HTTP client: a thin wrapper over httpx for the hub's API."""

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from fogline._errors import FoglineError


class HubUnreachableError(FoglineError):
    """The network failed; retrying is safe."""


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
        self._url = conn.url.rstrip("/")
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
