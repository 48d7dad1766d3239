"""What the supervisor runs: frozen run specs, converted by the agent from a release.

These are plain dataclasses, not pydantic: the release's `fogline-module.yaml`
was validated at the boundary (fogline.artifact); the checks here only stop
an agent bug from turning into a path traversal or a hung probe.
"""

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

HealthKind = Literal["http", "tcp", "command", "uptime"]
RestartMode = Literal["always", "on-failure", "never"]

# Same shape as fogline.artifact's module names: the name becomes a directory
# under the logs dir, so nothing that could climb out of it ("..", "/").
_NAME_RE: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
_ENV_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}", re.ASCII)
RESERVED_ENV_PREFIX: Final = "FOGLINE_"
_MAX_ARGS: Final = 64
_MAX_ENV: Final = 128
_MAX_TEXT: Final = 4096


def check_module_name(name: str) -> str:
    """Return `name` if it is a valid module name.

    Raises:
        ValueError: not 1-63 lowercase letters, digits and '-'.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"module name: expected 1-63 lowercase letters, digits and '-', got {name!r:.80}"
        )
    return name


def _check_seconds(what: str, value: float, *, allow_zero: bool = False) -> None:
    valid = isinstance(value, int | float) and math.isfinite(value)
    valid = valid and (value >= 0 if allow_zero else value > 0)
    if not valid:
        low = "a non-negative" if allow_zero else "a positive"
        raise ValueError(f"{what}: expected {low} number of seconds, got {value!r}")


def _check_argv(what: str, argv: tuple[str, ...]) -> None:
    if not isinstance(argv, tuple) or not 1 <= len(argv) <= _MAX_ARGS:
        raise ValueError(f"{what}: expected a tuple of 1-{_MAX_ARGS} strings, got {argv!r:.120}")
    for arg in argv:
        if not isinstance(arg, str) or "\x00" in arg or len(arg) > _MAX_TEXT:
            raise ValueError(f"{what}: bad argument {arg!r:.80}")
    if not argv[0]:
        raise ValueError(f"{what}: the program must not be empty")


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """How the supervisor decides that a running module is healthy.

    * http: `target` is a URL; any 2xx answer is healthy (no redirects followed,
      TLS not verified: like a kubelet probe, it checks liveness, not identity).
    * tcp: `target` is a port; healthy when 127.0.0.1:port accepts a connection.
    * command: `target` is an argv run in the module's workdir with the module's
      environment; healthy when it exits 0 within `timeout_s`.
    * uptime: `target` is seconds; healthy once the process has stayed up that long.
    """

    kind: HealthKind
    target: str | int | tuple[str, ...] | float
    timeout_s: float = 5.0
    interval_s: float = 5.0

    def __post_init__(self) -> None:
        _check_seconds("health.timeout_s", self.timeout_s)
        _check_seconds("health.interval_s", self.interval_s)
        target = self.target
        if self.kind == "http":
            if not isinstance(target, str) or not target.startswith(("http://", "https://")):
                raise ValueError(f"health.target: expected an http(s) URL, got {target!r:.80}")
            if len(target) > _MAX_TEXT or any(c.isspace() for c in target):
                raise ValueError(f"health.target: malformed URL {target!r:.80}")
        elif self.kind == "tcp":
            if type(target) is not int or not 1 <= target <= 65535:
                raise ValueError(f"health.target: expected a port 1-65535, got {target!r:.80}")
        elif self.kind == "command":
            _check_argv("health.target", target)  # type: ignore[arg-type]
        elif self.kind == "uptime":
            if isinstance(target, bool) or not isinstance(target, int | float):
                raise ValueError(f"health.target: expected seconds, got {target!r:.80}")
            _check_seconds("health.target", target, allow_zero=True)
        else:
            raise ValueError(
                f"health.kind: expected http, tcp, command or uptime, got {self.kind!r}"
            )


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When an exited module is started again, and how long to wait first.

    * always: after any exit, including exit code 0.
    * on-failure: after a non-zero exit code, a signal, or a failed start.
    * never: the module stays `exited`.
    """

    policy: RestartMode = "always"
    initial_backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    def __post_init__(self) -> None:
        if self.policy not in ("always", "on-failure", "never"):
            raise ValueError(
                f"restart.policy: expected always, on-failure or never, got {self.policy!r}"
            )
        _check_seconds("restart.initial_backoff_s", self.initial_backoff_s)
        _check_seconds("restart.max_backoff_s", self.max_backoff_s)
        if self.initial_backoff_s > self.max_backoff_s:
            raise ValueError("restart: initial_backoff_s must not exceed max_backoff_s")


@dataclass(frozen=True, slots=True)
class Resources:
    """Per-process limits set with setrlimit in the child; None means inherited.

    memory_mb -> RLIMIT_AS (address space: generous for runtimes that reserve
    virtual memory, e.g. the JVM or Go), open_files -> RLIMIT_NOFILE,
    cpu_seconds -> RLIMIT_CPU (SIGXCPU, then SIGKILL). Linux honours all three;
    elsewhere a limit the platform lacks is skipped, and a value above the
    agent's own hard limit is clamped to it (only root may raise a hard limit).
    """

    memory_mb: int | None = None
    open_files: int | None = None
    cpu_seconds: int | None = None

    def __post_init__(self) -> None:
        for name in ("memory_mb", "open_files", "cpu_seconds"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 1):
                raise ValueError(f"resources.{name}: expected a positive int, got {value!r}")


@dataclass(frozen=True, slots=True)
class MetricsTarget:
    """A module's local Prometheus endpoint (`http://127.0.0.1:{port}{path}`)
    and the sample names the agent reports of it (see agent/_module_metrics.py)."""

    port: int
    path: str = "/metrics"
    series: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if type(self.port) is not int or not 1 <= self.port <= 65535:
            raise ValueError(f"metrics.port: expected 1-65535, got {self.port!r}")
        if not isinstance(self.path, str) or not self.path.startswith("/") or len(self.path) > 256:
            raise ValueError(f"metrics.path: expected a path like /metrics, got {self.path!r:.80}")


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One module version as the supervisor runs it.

    The process gets a minimal environment, never the agent's (which may hold
    the hub token or proxy credentials): PATH and LANG copied from the agent
    (defaults /usr/local/bin:/usr/bin:/bin and C.UTF-8), HOME set to
    `data_dir` (else `workdir`), then `env`, then FOGLINE_MODULE,
    FOGLINE_MODULE_VERSION and, when set, FOGLINE_CONFIG (`config_path`) and
    FOGLINE_DATA (`data_dir`).

    `workdir` holds the release's files (read-only for the module: they are
    drift-checked); `data_dir` is the module's own, writable, kept across
    versions.
    """

    name: str
    version: str
    workdir: Path
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    config_path: Path | None = None
    data_dir: Path | None = None
    health: HealthCheck | None = None
    start_grace_s: float = 5.0  # not probed before it ends: see Supervisor
    stop_grace_s: float = 10.0
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    resources: Resources = field(default_factory=Resources)
    # Scraped by the agent for its health report; adopted in place.
    metrics: MetricsTarget | None = None

    def __post_init__(self) -> None:
        check_module_name(self.name)
        if not isinstance(self.version, str) or not 1 <= len(self.version) <= 128:
            raise ValueError(f"version: expected 1-128 characters, got {self.version!r:.80}")
        _check_argv("command", self.command)
        if len(self.env) > _MAX_ENV:
            raise ValueError(f"env: at most {_MAX_ENV} variables, got {len(self.env)}")
        for key, value in self.env.items():
            if not isinstance(key, str) or not _ENV_NAME_RE.fullmatch(key):
                raise ValueError(f"env: bad variable name {key!r:.80}")
            if key.upper().startswith(RESERVED_ENV_PREFIX):
                raise ValueError(f"env: {key!r}: names starting with FOGLINE_ are set by the agent")
            if not isinstance(value, str) or "\x00" in value or len(value) > _MAX_TEXT:
                raise ValueError(f"env: {key}: bad value {value!r:.80}")
        _check_seconds("start_grace_s", self.start_grace_s, allow_zero=True)
        _check_seconds("stop_grace_s", self.stop_grace_s, allow_zero=True)

    def needs_restart_from(self, running: "RunSpec") -> bool:
        """True when `running`'s process cannot become this spec without a restart.

        Version, workdir, command, env, config path, data dir and resources
        are fixed at exec time. Health, graces, the restart policy and the
        metrics endpoint are adopted in place.
        """
        return (
            self.version,
            self.workdir,
            self.command,
            dict(self.env),
            self.config_path,
            self.data_dir,
            self.resources,
        ) != (
            running.version,
            running.workdir,
            running.command,
            dict(running.env),
            running.config_path,
            running.data_dir,
            running.resources,
        )
