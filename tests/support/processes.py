"""Real `fogline hub serve` and `fogline agent run` processes for tests."""

from __future__ import annotations

import asyncio
import os
import pwd
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from fogline.agent._report import REPORT_BACKOFF_MAX_S

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}

# How long a test waits for an agent's next report once its hub is back: the
# agent retried on a jittered backoff while the hub was away, and full jitter
# climbs fast (five quick refusals make the next wait up to 16 s), so the
# next try may come up to the cap after the restart; plus a loaded machine.
AFTER_HUB_OUTAGE_S = REPORT_BACKOFF_MAX_S + 20

# Every process these helpers started and nobody stopped yet: an autouse
# fixture (tests/conftest.py) stops them after each test, so a test that fails
# halfway never leaves an agent or a hub running.
RUNNING: dict[int, Any] = {}


def stop_leftovers(keep: set[int]) -> None:
    """Kill what is still running, except the processes listed in `keep`
    (those of module- and session-scoped fixtures, started before the test)."""
    for key, process in list(RUNNING.items()):
        if key not in keep:
            process.stop(signal.SIGKILL)


def process_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (dead, not yet reaped) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(") ", 1)[1][0] != "Z"  # the state follows "(comm) "
    except FileNotFoundError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fogline_cmd() -> list[str]:
    return [sys.executable, "-m", "fogline"]


def tls(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """An SSL context trusting the fleet CA, optionally presenting a client cert."""
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key else None)
    return context


def wait_until(predicate: Any, timeout_s: float, what: str, interval_s: float = 0.05) -> Any:
    """Call `predicate` every `interval_s` until it returns something truthy,
    and return that; after `timeout_s`, fail naming `what` and the last value.

    The one way tests wait for a condition (async tests: `wait_until_async`).
    A predicate may raise to fail at once (a process that died, say).
    """
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})")


async def wait_until_async(
    predicate: Any,
    timeout_s: float,
    what: str,
    interval_s: float = 0.05,
    *,
    in_thread: bool = False,
) -> Any:
    """`wait_until` for a test running an event loop: sleeps without blocking
    the loop. `in_thread` runs a blocking predicate (one that calls the hub
    with httpx, say) in a worker thread, so the loop's own tasks keep going."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(predicate) if in_thread else predicate()
        if last:
            return last
        await asyncio.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})")


@dataclass
class HubProcess:
    data_dir: Path
    port: int
    db_url: str | None
    proc: subprocess.Popen[bytes] | None = None
    token: str = ""
    extra_args: list[str] = field(default_factory=list)
    # RLIMIT_NOFILE (soft and hard) for the hub process, to test it under a
    # tight open-file limit.
    open_files_limit: int | None = None
    env: dict[str, str] = field(default_factory=dict)  # on top of ENV

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca(self) -> Path:
        return self.data_dir / "ca.pem"

    @property
    def log_path(self) -> Path:
        """The hub's structured log (stderr)."""
        return self.data_dir.parent / f"hub-{self.port}.log"

    @property
    def stdout_path(self) -> Path:
        return self.data_dir.parent / f"hub-{self.port}.out"

    def start(self) -> None:
        args = [
            *fogline_cmd(),
            "hub",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            "--report-interval",
            "1",
            *self.extra_args,
        ]
        if self.db_url:
            args += ["--db", self.db_url]
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        limit = self.open_files_limit
        with open(self.log_path, "ab") as log, open(self.stdout_path, "ab") as out:
            self.proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=log,
                env={**ENV, **self.env},
                preexec_fn=(lambda: _limit_open_files(limit)) if limit else None,
            )
        RUNNING[id(self)] = self
        wait_until(self._healthy, 30, f"hub on port {self.port} ({self.log_path})")
        self.token = (self.data_dir / "admin-token").read_text().strip()

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"hub exited with {self.proc.returncode}: {self.log_text()}")
        if not self.ca.exists():
            return False
        try:
            return (
                httpx.get(f"{self.url}/healthz", verify=tls(self.ca), timeout=2).status_code == 200
            )
        except httpx.HTTPError:
            return False

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        RUNNING.pop(id(self), None)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            verify=tls(self.ca),
            headers={"authorization": f"Bearer {self.token}"},
            timeout=10,
        )

    def cli(
        self, *args: str, check: bool = True, input_text: str | None = None, timeout_s: float = 60
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **ENV,
            "FOGLINE_HUB": self.url,
            "FOGLINE_TOKEN": self.token,
            "FOGLINE_CA": str(self.ca),
            "COLUMNS": "200",
        }
        result = subprocess.run(
            [*fogline_cmd(), *args],
            capture_output=True,
            text=True,
            env=env,
            input=input_text,
            timeout=timeout_s,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"fogline {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def trust_new_key(self, directory: Path, name: str = "ci") -> Path:
        """Create a release key pair in `directory` and apply its ReleaseKey
        document: releases signed with the returned key are trusted."""
        document = self.cli("keys", "create", name, "--dir", str(directory)).stdout
        self.cli("apply", "-f", "-", input_text=document)
        return directory / f"{name}.key"

    def create_claim(self, *, labels: str = "", max_uses: int = 10, expires: str = "1h") -> str:
        return self.cli(
            "claim", "create", "--labels", labels, "--max-uses", str(max_uses), "--expires", expires
        ).stdout.strip()

    def device(self, ref: str) -> dict[str, Any]:
        with self.client() as client:
            response = client.get(f"/v1/devices/{ref}")
            response.raise_for_status()
            return dict(response.json())

    def devices(self, **params: str) -> list[dict[str, Any]]:
        """Every device `GET /v1/devices` lists with these filters (all pages)."""
        with self.client() as client:
            return list_devices(client, **params)

    def metric(self, sample: str, **labels: str) -> float:
        """One sample of this hub process's /metrics, read with the operator
        token. Counters start from zero in every hub process (and worker)."""
        with self.client() as client:
            response = client.get("/metrics")
            response.raise_for_status()
        return metric_sample(response.text, sample, labels, "the hub's")


MAX_DEVICE_PAGES = 1000

# A hub that judges health fast: an alert pass every second (three report
# intervals), a forecast pass every second over the last 30 s of samples
# (hours, in a real fleet).
FAST_FORECAST_HUB_ARGS: tuple[str, ...] = (
    "--report-interval",
    "0.3",
    "--forecast-window",
    "30s",
    "--forecast-min-span",
    "2s",
    "--forecast-interval",
    "1s",
)


def list_devices(client: httpx.Client, **params: str) -> list[dict[str, Any]]:
    """Every device `GET /v1/devices` lists with these filters, following
    `next_cursor` in pages of 1,000 (at most MAX_DEVICE_PAGES)."""
    rows: list[dict[str, Any]] = []
    query = {**params, "limit": "1000"}
    for _page in range(MAX_DEVICE_PAGES):
        response = client.get("/v1/devices", params=query)
        response.raise_for_status()
        page = response.json()
        rows += page["devices"]
        if page.get("next_cursor") is None:
            return rows
        query["cursor"] = page["next_cursor"]
    raise AssertionError(f"GET /v1/devices: more than {MAX_DEVICE_PAGES} pages")


def metric_sample(text: str, sample: str, labels: dict[str, str], whose: str) -> float:
    """One sample of a Prometheus text page; absent, the test fails naming it."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == sample and found.labels == labels:
                return float(found.value)
    raise AssertionError(f"{whose} /metrics has no sample {sample}{labels or ''}")


def _limit_open_files(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


def start_hub(
    data_dir: Path,
    *,
    db_url: str | None = None,
    port: int | None = None,
    extra_args: list[str] | None = None,
    open_files_limit: int | None = None,
    env: dict[str, str] | None = None,
) -> HubProcess:
    hub = HubProcess(
        data_dir,
        port or free_port(),
        db_url,
        extra_args=extra_args or [],
        open_files_limit=open_files_limit,
        env=env or {},
    )
    hub.start()
    return hub


def start_replica(first: HubProcess, data_dir: Path) -> HubProcess:
    """A second hub on `first`'s database, sharing its CA, TLS files and admin
    token, as replicas do (PostgreSQL only: SQLite lives in the data dir)."""
    shutil.copytree(first.data_dir, data_dir, ignore=shutil.ignore_patterns("hub.db*"))
    second = start_hub(data_dir, db_url=first.db_url)
    second.token = first.token
    return second


@dataclass
class AgentProcess:
    data_dir: Path
    hub: HubProcess
    name: str
    claim: str | None
    labels: str = ""
    proc: subprocess.Popen[bytes] | None = None
    hub_url: str | None = None
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None  # set: run there, given --data-dir relative to it
    # Python under /root (0700), data in 0700 tmp dirs: out of nobody's reach, so run as us.
    module_user: str | None = field(default_factory=lambda: pwd.getpwuid(os.geteuid()).pw_name)
    # Set: run the agent under `python -m fogline.launcher --root launcher_root`.
    launcher_root: Path | None = None
    trial_deadline: str = "2m"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"agent-{self.name}.log"

    def start(self) -> None:
        args = [
            *fogline_cmd(),
            "agent",
            "run",
            "--hub",
            self.hub_url or self.hub.url,
            "--ca",
            str(self.hub.ca),
            "--data-dir",
            os.path.relpath(self.data_dir, self.cwd) if self.cwd else str(self.data_dir),
            "--name",
            self.name,
            "--local-port",
            "0",
        ]
        env = {**ENV, **self.env}
        if self.claim:
            env["FOGLINE_CLAIM"] = self.claim  # never on the command line: see docs/security.md
        if self.labels:
            args += ["--labels", self.labels]
        if self.module_user is not None:
            args += ["--module-user", self.module_user]
        args += self.extra_args
        if self.launcher_root is not None:
            launcher = [sys.executable, "-m", "fogline.launcher", "--root", str(self.launcher_root)]
            args = [*launcher, "--trial-deadline", self.trial_deadline, "--", *args[3:]]
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        port_file = self.data_dir / "local-port"
        port_file.unlink(missing_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, env=env, cwd=self.cwd)
        RUNNING[id(self)] = self

    def health(self) -> dict[str, Any] | None:
        port_file = self.data_dir / "local-port"
        if not port_file.exists():
            return None
        try:
            port = int(port_file.read_text())
            return dict(httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json())
        except (httpx.HTTPError, ValueError):
            return None

    def metric(self, sample: str, **labels: str) -> float:
        """One sample of the agent's /metrics on its local port."""
        port = int((self.data_dir / "local-port").read_text())
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        return metric_sample(text, sample, labels, f"agent {self.name}'s")

    def wait_enrolled(self, timeout_s: float = 30) -> str:
        def enrolled() -> str | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}: {self.log_text()}")
            health = self.health()
            return health.get("device_id") if health and health.get("enrolled") else None

        return str(wait_until(enrolled, timeout_s, f"agent {self.name} to enroll"))

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        code = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                code = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait()
        elif self.proc is not None:
            code = self.proc.returncode
        self.proc = None
        RUNNING.pop(id(self), None)
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)
