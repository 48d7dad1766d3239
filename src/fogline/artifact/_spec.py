"""`fogline-module.yaml`: what a module release is and how the agent runs it.

Parsed once, at the boundary, into frozen pydantic models. Field names in
Python carry their unit (`timeout_s`); the file uses the short camelCase keys
(`timeout`, `startGrace`) and durations with units (`10s`).
"""

import contextlib
import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args
from urllib.parse import urlsplit

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from fogline._durable import write_atomic
from fogline._duration import format_duration, parse_duration
from fogline.protocol import MAX_MODULE_SERIES, SERIES_NAME_PATTERN

from ._errors import ModuleSpecError
from ._semver import Version

MODULE_FILE: Final = "fogline-module.yaml"
# A module file is a page of YAML; anything far larger is a mistake or an attack.
MAX_MODULE_FILE_BYTES: Final = 64 * 1024

ModuleKind = Literal["service", "model", "config", "agent"]
# The one name a `kind: agent` release may have: a node runs one agent, and
# the deployment's module entry of that name is what its rollout follows.
AGENT_MODULE: Final = "fogline-agent"
RestartMode = Literal["always", "on-failure", "never"]
# `uname -m` spellings; `any` marks a release with no native code (a model,
# a configuration bundle, a pure-Python service).
Architecture = Literal["x86_64", "aarch64", "armv7l", "riscv64", "any"]
_ARCH_ALIASES: Final = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "armhf": "armv7l"}

_NAME_RE: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
_ENV_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}", re.ASCII)
# The agent sets FOGLINE_* variables itself (data dir, module version...).
_RESERVED_ENV_PREFIX: Final = "FOGLINE_"
_MAX_ARG_CHARS: Final = 4096
_MAX_ARGS: Final = 64
_MAX_ENV: Final = 128
_MAX_URL_CHARS: Final = 2048
_HOUR_S: Final = 3600.0
_DAY_S: Final = 86400.0
_PROCESS_FIELDS: Final = (
    "command",
    "env",
    "health",
    "startGrace",
    "stopGrace",
    "restart",
    "resources",
    "metrics",
)


def _check_name(value: object) -> object:
    if isinstance(value, str) and not _NAME_RE.fullmatch(value):
        raise ValueError(
            f"must be 1-63 lowercase letters, digits and '-', starting and ending "
            f"with a letter or digit (got {value[:80]!r})"
        )
    return value


def _check_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _check_env_name(key: str) -> str:
    if not _ENV_NAME_RE.fullmatch(key):
        raise ValueError(
            f"variable name {key[:80]!r} must be letters, digits and '_', not starting "
            "with a digit, at most 128 characters"
        )
    if key.upper().startswith(_RESERVED_ENV_PREFIX):
        raise ValueError(
            f"variable name {key!r}: names starting with FOGLINE_ are set by the agent"
        )
    return key


def _between(low_s: float, high_s: float) -> Callable[[float], float]:
    def check(seconds: float) -> float:
        if not low_s <= seconds <= high_s:
            raise ValueError(
                f"must be between {format_duration(low_s)} and {format_duration(high_s)} "
                f"(got {format_duration(seconds)})"
            )
        return seconds

    return check


_AS_TEXT: Final = PlainSerializer(format_duration, return_type=str)
# Probe timings, uptime and backoff: at least a millisecond.
_PositiveS = Annotated[
    float, BeforeValidator(parse_duration), AfterValidator(_between(0.001, _DAY_S)), _AS_TEXT
]
# Grace periods may be zero: "no grace".
_GraceS = Annotated[
    float, BeforeValidator(parse_duration), AfterValidator(_between(0.0, _HOUR_S)), _AS_TEXT
]
ModuleName = Annotated[str, Strict(), BeforeValidator(_check_name)]
_Arg = Annotated[str, Strict(), Field(max_length=_MAX_ARG_CHARS), AfterValidator(_check_text)]
_Argv = Annotated[tuple[_Arg, ...], Field(min_length=1, max_length=_MAX_ARGS)]
_EnvName = Annotated[str, Strict(), AfterValidator(_check_env_name)]
_EnvValue = Annotated[str, Strict(), Field(max_length=_MAX_ARG_CHARS), AfterValidator(_check_text)]
_Port = Annotated[int, Strict(), Field(ge=1, le=65535)]
# A path on the module's own loopback server: no scheme, host, query or spaces.
_PATH_RE: Final = re.compile(r"/[A-Za-z0-9._~/-]{0,255}", re.ASCII)


def _fail(field: str, reason: str) -> PydanticCustomError:
    # Cross-field checks run on the whole model, whose errors carry no
    # location; the field rides in the context and _problem() uses it.
    return PydanticCustomError("fogline_field", "{reason}", {"field": field, "reason": reason})


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HealthCheck(_Frozen):
    """How the agent decides a running service is healthy: exactly one probe kind."""

    http: Annotated[str, Strict()] | None = None
    tcp: _Port | None = None
    command: _Argv | None = None
    uptime_s: _PositiveS | None = Field(default=None, alias="uptime")
    timeout_s: _PositiveS = Field(default=5.0, alias="timeout")
    interval_s: _PositiveS = Field(default=5.0, alias="interval")

    @field_validator("http")
    @classmethod
    def _check_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        valid = len(url) <= _MAX_URL_CHARS and not any(c.isspace() for c in url)
        try:
            parts = urlsplit(url)
            valid = valid and parts.scheme in ("http", "https") and bool(parts.hostname)
            valid = valid and (parts.port is None or parts.port > 0)
        except ValueError:  # a port that is not a number or out of range
            valid = False
        if not valid:
            raise ValueError(
                f"must be an http(s) URL like http://127.0.0.1:8081/healthz (got {url[:80]!r})"
            )
        return url

    @model_validator(mode="after")
    def _exactly_one_probe(self) -> "HealthCheck":
        chosen = [
            key
            for key, value in (
                ("http", self.http),
                ("tcp", self.tcp),
                ("command", self.command),
                ("uptime", self.uptime_s),
            )
            if value is not None
        ]
        if len(chosen) != 1:
            got = ", ".join(chosen) if chosen else "none"
            raise ValueError(f"needs exactly one of http, tcp, command, uptime (got {got})")
        return self


class MetricsEndpoint(_Frozen):
    """A service's local Prometheus endpoint and the series the agent reports of it.

    The agent scrapes `http://127.0.0.1:{port}{path}` on its report
    interval and reports each listed sample name summed over its label sets
    (fogline.protocol.ModuleHealth.metrics), so canary analysis can judge a
    release on it (`module:NAME:SERIES` in `spec.rollout.analysis`).
    """

    port: _Port
    path: Annotated[str, Strict(), Field(max_length=256)] = "/metrics"
    series: Annotated[
        tuple[Annotated[str, Strict(), Field(pattern=SERIES_NAME_PATTERN)], ...],
        Field(min_length=1, max_length=MAX_MODULE_SERIES),
    ]

    @field_validator("path")
    @classmethod
    def _check_path(cls, path: str) -> str:
        if not _PATH_RE.fullmatch(path):
            raise ValueError(f"must be a URL path like /metrics (got {path[:80]!r})")
        return path

    @field_validator("series")
    @classmethod
    def _unique_series(cls, series: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(series)) != len(series):
            raise ValueError("lists a series twice")
        return series


class Backoff(_Frozen):
    """Delay between restarts: doubles from `initial` up to `max`."""

    initial_s: _PositiveS = Field(default=1.0, alias="initial")
    max_s: _PositiveS = Field(default=60.0, alias="max")

    @model_validator(mode="after")
    def _initial_not_above_max(self) -> "Backoff":
        if self.initial_s > self.max_s:
            raise ValueError("initial must not be longer than max")
        return self


class RestartPolicy(_Frozen):
    """When the supervisor restarts an exited service, and how fast."""

    policy: RestartMode = "always"
    backoff: Backoff = Field(default_factory=Backoff)


class ResourceLimits(_Frozen):
    """Per-process limits the agent applies; None means no limit."""

    memory_mb: Annotated[int, Strict(), Field(ge=1, le=1 << 20)] | None = Field(
        default=None, alias="memoryMB"
    )
    cpu_seconds: Annotated[int, Strict(), Field(ge=1, le=10**9)] | None = Field(
        default=None, alias="cpuSeconds"
    )
    open_files: Annotated[int, Strict(), Field(ge=1, le=1 << 20)] | None = Field(
        default=None, alias="openFiles"
    )


class ModuleSpec(_Frozen):
    """The parsed `fogline-module.yaml` of one release.

    `command` and `health` are set for every service and None for model and
    config bundles, which run no process, and for the agent itself (`kind:
    agent`: a `fogline/` package tree the node's launcher runs).
    """

    name: ModuleName
    version: Version
    kind: ModuleKind = "service"
    command: _Argv | None = None
    env: Annotated[dict[_EnvName, _EnvValue], Field(max_length=_MAX_ENV)] = Field(
        default_factory=dict
    )
    health: HealthCheck | None = None
    start_grace_s: _GraceS = Field(default=5.0, alias="startGrace")
    stop_grace_s: _GraceS = Field(default=10.0, alias="stopGrace")
    restart: RestartPolicy = Field(default_factory=RestartPolicy)
    resources: ResourceLimits = Field(default_factory=ResourceLimits)
    metrics: MetricsEndpoint | None = None
    architectures: Annotated[tuple[Architecture, ...], Field(min_length=1, max_length=8)]

    @field_validator("command")
    @classmethod
    def _argv0_not_empty(cls, argv: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if argv is not None and not argv[0]:
            raise ValueError("the program (first item) must not be empty")
        return argv

    @field_validator("architectures", mode="before")
    @classmethod
    def _suggest_spelling(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            for item in value:
                if isinstance(item, str) and item in _ARCH_ALIASES:
                    raise ValueError(
                        f"write {_ARCH_ALIASES[item]!r} (as `uname -m` prints it), not {item!r}"
                    )
        return value

    @field_validator("architectures")
    @classmethod
    def _unique(cls, archs: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(archs)) != len(archs):
            raise ValueError("lists an architecture twice")
        if "any" in archs and len(archs) > 1:
            raise ValueError("'any' already covers every architecture; list it alone")
        return archs

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> "ModuleSpec":
        if self.name == AGENT_MODULE and self.kind != "agent":
            # The node treats the module of this name as itself (its launcher's slots).
            raise _fail(
                "kind", f"{AGENT_MODULE!r} is the name of the agent's own releases: kind: agent"
            )
        if self.kind == "service":
            if self.command is None:
                raise _fail("command", "is required for kind 'service', e.g. [python3, server.py]")
            if self.health is None:
                raise _fail(
                    "health",
                    "is required for kind 'service', e.g. {http: http://127.0.0.1:8081/healthz} "
                    "or {uptime: 5s}",
                )
            return self
        if self.kind == "agent" and self.name != AGENT_MODULE:
            raise _fail("name", f"a kind 'agent' release is named {AGENT_MODULE!r}")
        for alias in _PROCESS_FIELDS:
            if _FIELD_OF_ALIAS[alias] in self.model_fields_set:
                raise _fail(
                    alias, f"only a service runs a process; remove it for kind {self.kind!r}"
                )
        return self


_FIELD_OF_ALIAS: Final = {
    (info.alias or name): name for name, info in ModuleSpec.model_fields.items()
}


def supports_architecture(spec: ModuleSpec, machine: str) -> bool:
    """True when the release runs on `machine` (as `uname -m` or Go/Debian spell it)."""
    wanted = machine.strip().lower()
    wanted = _ARCH_ALIASES.get(wanted, wanted)
    return "any" in spec.architectures or wanted in spec.architectures


def load_module_spec(source: Path | str | bytes, *, name: str | None = None) -> ModuleSpec:
    """Parse a module file: a Path is read, a str or bytes is the YAML text itself.

    `name` is how errors refer to the text (default: the path, or "<module file>").

    Raises:
        ModuleSpecError: unreadable, too large, not YAML, or a field is wrong;
            the error names the file, the field path and the reason.
    """
    if isinstance(source, Path):
        label = name or str(source)
        data = _read_module_file(source, label)
    else:
        label = name or "<module file>"
        # surrogatepass: a str with lone surrogates fails below as "not UTF-8".
        data = source.encode("utf-8", "surrogatepass") if isinstance(source, str) else source
    if len(data) > MAX_MODULE_FILE_BYTES:
        raise ModuleSpecError(label, [("", f"larger than {MAX_MODULE_FILE_BYTES} bytes")])
    # PyYAML stays out of an agent that only reads the parsed copies
    # (`load_module_spec_cached`): about 0.9 MB resident (BENCHMARKS.md).
    from ._yaml import StrictYamlError, load_strict_yaml

    try:
        document = load_strict_yaml(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ModuleSpecError(label, [("", "is not UTF-8 text")]) from exc
    except StrictYamlError as exc:
        raise ModuleSpecError(label, [("", f"not valid YAML: {exc}")]) from exc
    if not isinstance(document, dict):
        got = "an empty file" if document is None else f"a {type(document).__name__}"
        raise ModuleSpecError(
            label, [("", f"must be a mapping of fields (name, version, ...), got {got}")]
        )
    try:
        return ModuleSpec.model_validate(document)
    except ValidationError as exc:
        raise ModuleSpecError(label, [_problem(err) for err in exc.errors()]) from exc


def load_module_spec_cached(path: Path, cache: Path) -> ModuleSpec:
    """`load_module_spec(path)`, through a parsed copy kept in the file `cache`.

    The copy (JSON, mode 0600: `env` may carry secrets) holds the SHA-256 of
    the module file's bytes it was parsed from, and is used only while the
    file still has those bytes: the module file stays the truth. A missing,
    stale, unreadable or invalid copy means the file is parsed as YAML and
    the copy rewritten (best effort: an unwritable `cache` only costs the
    next call a parse). The copy is validated again like the file.

    The agent reads its installed releases' module files at every start;
    through their copies, an agent with no update since its start never
    imports PyYAML.

    Raises:
        ModuleSpecError: as `load_module_spec`.
    """
    label = str(path)
    data = _read_module_file(path, label)
    digest = hashlib.sha256(data).hexdigest()
    cached = _cached_spec(cache, digest)
    if cached is not None:
        return cached
    spec = load_module_spec(data, name=label)
    copy = {
        "format": _CACHE_FORMAT,
        "sha256": digest,
        # Only what the file set: the checks on which fields are set (a
        # process field outside `kind: service`) see the same on the copy.
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_unset=True),
    }
    with contextlib.suppress(OSError):
        write_atomic(cache, orjson.dumps(copy), mode=0o600)
    return spec


_CACHE_FORMAT: Final = 1


def _cached_spec(cache: Path, digest: str) -> ModuleSpec | None:
    try:
        with cache.open("rb") as fh:
            raw = fh.read(_MAX_CACHE_BYTES + 1)
    except OSError:
        return None
    if len(raw) > _MAX_CACHE_BYTES:
        return None
    try:
        copy = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if (
        not isinstance(copy, dict)
        or copy.get("format") != _CACHE_FORMAT
        or copy.get("sha256") != digest
        or not isinstance(copy.get("spec"), dict)
    ):
        return None
    try:
        return ModuleSpec.model_validate(copy["spec"])
    except ValidationError:
        return None


# A module file is at most MAX_MODULE_FILE_BYTES of YAML; its JSON is of that order.
_MAX_CACHE_BYTES: Final = 4 * MAX_MODULE_FILE_BYTES


def _read_module_file(path: Path, label: str) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(MAX_MODULE_FILE_BYTES + 1)
    except OSError as exc:
        raise ModuleSpecError(label, [("", f"cannot read: {exc.strerror or exc}")]) from exc


def _problem(err: ErrorDetails) -> tuple[str, str]:
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    loc = tuple(part for part in err["loc"] if part != "[key]")
    if err["type"] == "fogline_field":
        return str(ctx["field"]), str(ctx["reason"])
    path = _render_path(loc)
    if err["type"] == "value_error":
        return path, str(ctx.get("error", err["msg"]))
    if err["type"] == "missing":
        return path, "is required"
    if err["type"] == "extra_forbidden":
        known = _known_fields(loc[:-1])
        return path, "unknown field" + (f" (known: {', '.join(known)})" if known else "")
    return path, err["msg"]


def _render_path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _known_fields(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the mapping at `loc` accepts, for "unknown field" hints."""
    model: type[BaseModel] = ModuleSpec
    for part in loc:
        by_alias = {info.alias or name: info for name, info in model.model_fields.items()}
        info = by_alias.get(str(part))
        if info is None:
            return []
        candidates = (info.annotation, *get_args(info.annotation))  # X or X | None
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return [info.alias or name for name, info in model.model_fields.items()]
