"""A throwaway hub for rehearsals: `python -m fogline hub serve` in a temp dir."""

import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

import httpx

from fogline.hubclient import HubError, map_transport_errors, raise_for_response

from ._errors import RehearsalError

_START_TIMEOUT_S: Final = 60.0
_STOP_TIMEOUT_S: Final = 10.0
# Pages of 1,000: a rehearsal's fleet is far smaller than a million devices.
_MAX_DEVICE_PAGES: Final = 1000


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayHub:
    """A hub process of its own, on a free loopback port; `stop()` ends it."""

    def __init__(self, data_dir: Path, *, report_interval_s: float = 1.0) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.report_interval_s = report_interval_s
        self.token = ""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The hub's process id while it runs (for measurements)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def ca(self) -> Path:
        return self.data_dir / "ca.pem"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / "hub.log"

    def start(self) -> None:
        """Raises:
        RehearsalError: the hub exited or did not answer within a minute.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        args = [
            sys.executable,
            "-m",
            "fogline",
            "hub",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            "--report-interval",
            str(self.report_interval_s),
            "--log-level",
            "warning",
            # Every virtual device connects from 127.0.0.1: no per-address cap.
            "--max-connections-per-address",
            "0",
        ]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(args, stdout=log, stderr=log)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._healthy():
            if time.monotonic() > deadline:
                self.stop()
                raise RehearsalError(f"the throwaway hub did not start: {self.log_tail()}")
            time.sleep(0.1)
        self.token = (self.data_dir / "admin-token").read_text().strip()

    def _healthy(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise RehearsalError(
                f"the throwaway hub exited with {self._proc.returncode}: {self.log_tail()}"
            )
        if not self.ca.exists() or not (self.data_dir / "admin-token").exists():
            return False
        try:
            context = ssl.create_default_context(cafile=str(self.ca))
            return httpx.get(f"{self.url}/healthz", verify=context, timeout=2).is_success
        except (httpx.HTTPError, ssl.SSLError):
            return False

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def client(self) -> "OperatorClient":
        return OperatorClient(self.url, self.token, self.ca)


class OperatorClient:
    """The operator API of the throwaway hub; every failure is a RehearsalError.

    What a failure means is decided once, by fogline.hubclient (the mapping
    the agent and the CLI use): the RehearsalError carries that HubError as
    its cause and `hub_error`, so a caller can still tell a transient
    answer (`HubUnreachableError`: ask again) from a refusal.
    """

    def __init__(self, url: str, token: str, ca: Path) -> None:
        self._url = url
        self._http = httpx.Client(
            base_url=url,
            headers={"authorization": f"Bearer {token}"},
            verify=ssl.create_default_context(cafile=str(ca)),
            timeout=60,
        )

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Raises:
        RehearsalError: the hub is unreachable or refused; the hub's message
            (its `hub_error` is the fogline.hubclient error it maps to).
        """
        try:
            with map_transport_errors(self._url):
                response = self._http.request(method, path, **kwargs)
            raise_for_response(response)
            return response.json() if response.content else None
        except HubError as exc:
            raise RehearsalError(f"{method} {path}: {exc}", hub_error=exc) from exc
        except ValueError as exc:  # a 2xx that is not JSON: not the hub's answer
            raise RehearsalError(f"{method} {path}: unreadable answer: {exc}") from exc

    def devices(self, **params: str) -> list[dict[str, Any]]:
        """Every device `GET /v1/devices` lists with these filters, page by page.

        Raises:
            RehearsalError: see `call`; or the hub kept answering pages past
                any fleet a rehearsal starts.
        """
        rows: list[dict[str, Any]] = []
        query = {**params, "limit": "1000"}
        for _page in range(_MAX_DEVICE_PAGES):
            page = self.call("GET", "/v1/devices", params=query)
            rows += page["devices"]
            if page.get("next_cursor") is None:
                return rows
            query["cursor"] = page["next_cursor"]
        raise RehearsalError(f"GET /v1/devices: more than {_MAX_DEVICE_PAGES} pages")
