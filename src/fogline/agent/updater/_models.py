"""What the updater is asked to do and what it reports: frozen dataclasses.

`ReleaseTarget` is checked once, when built (the agent builds it from the
validated desired state); everything that reaches a path (name, version,
digest) is validated here, so no target can steer a file name.
"""

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import orjson

from fogline.artifact import (
    DEFAULT_MAX_INSTALL_BYTES,
    DEFAULT_MAX_INSTALL_FILES,
    is_digest,
    parse_semver,
)

from ._errors import InvalidTargetError
from ._states import State

_NAME_RE: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
_ENV_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}", re.ASCII)
MAX_SIGNATURE_BYTES: Final = 4096  # the artifact package's envelope limit
MAX_CONFIG_BYTES: Final = 256 * 1024
MAX_ENV: Final = 128
MAX_ENV_VALUE_CHARS: Final = 4096
_DAY_S: Final = 86400.0


@dataclass(frozen=True, slots=True)
class ReleaseTarget:
    """One module release the desired state asks for.

    `signature` is the release's `.sig` envelope (JSON bytes). `config` and
    `env` go to the activator with the release. `health_timeout_s` overrides
    the release's own startGrace + health timeout; `size` (bytes), when the
    hub knows it, bounds the download. `allow_downgrade` lets the target be
    older than the installed version (the deployment's `allowDowngrade`, or
    a rollback by a rollout); without it such a target is refused.

    Raises:
        InvalidTargetError: a field is malformed (field and reason named).
    """

    name: str
    version: str
    digest: str
    signature: bytes
    config: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    health_timeout_s: float | None = None
    size: int | None = None
    allow_downgrade: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise InvalidTargetError("name", f"must be a DNS label, got {str(self.name)[:80]!r}")
        try:
            canonical = str(parse_semver(self.version))
        except ValueError as exc:
            raise InvalidTargetError("version", str(exc)) from None
        if canonical != self.version:
            raise InvalidTargetError("version", f"not canonical: {self.version!r}")
        if not is_digest(self.digest):
            raise InvalidTargetError(
                "digest", f"must be sha256:<64 lowercase hex>, got {str(self.digest)[:80]!r}"
            )
        if not isinstance(self.signature, bytes) or len(self.signature) > MAX_SIGNATURE_BYTES:
            raise InvalidTargetError("signature", f"must be at most {MAX_SIGNATURE_BYTES} bytes")
        object.__setattr__(self, "config", _frozen_config(self.config))
        object.__setattr__(self, "env", _frozen_env(self.env))
        timeout = self.health_timeout_s
        if timeout is not None and not (isinstance(timeout, int | float) and 0 < timeout <= _DAY_S):
            raise InvalidTargetError("health_timeout_s", f"must be in (0, 86400], got {timeout!r}")
        if self.size is not None and not (isinstance(self.size, int) and self.size >= 0):
            raise InvalidTargetError("size", f"must be a byte count >= 0, got {self.size!r}")
        if not isinstance(self.allow_downgrade, bool):
            raise InvalidTargetError("allow_downgrade", "must be true or false")

    @property
    def install_name(self) -> str:
        """The install directory's name: `<version>-<first 12 hex of the digest>`."""
        return f"{self.version}-{self.digest.removeprefix('sha256:')[:12]}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "digest": self.digest,
            "signature_b64": base64.b64encode(self.signature).decode("ascii"),
            "config": dict(self.config),
            "env": dict(self.env),
            "health_timeout_s": self.health_timeout_s,
            "size": self.size,
            "allow_downgrade": self.allow_downgrade,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ReleaseTarget":
        """Rebuild a target saved with `to_json`.

        Raises:
            InvalidTargetError: a field is missing or malformed.
        """
        try:
            return cls(
                name=data["name"],
                version=data["version"],
                digest=data["digest"],
                signature=base64.b64decode(str(data["signature_b64"]), validate=True),
                config=data.get("config") or {},
                env=data.get("env") or {},
                health_timeout_s=data.get("health_timeout_s"),
                size=data.get("size"),
                allow_downgrade=data.get("allow_downgrade", False),  # older journals lack it
            )
        except (KeyError, TypeError, binascii.Error) as exc:
            raise InvalidTargetError("document", f"missing or mistyped field: {exc}") from None

    def deployment_key(self) -> str:
        """SHA-256 of the config and env this release runs with (hex)."""
        encoded = orjson.dumps([dict(self.config), dict(self.env)], option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(encoded).hexdigest()

    def same_deployment(self, other: "ReleaseTarget") -> bool:
        """True when `other` would run exactly the same: same bytes, config and env."""
        return (self.digest, dict(self.config), dict(self.env)) == (
            other.digest,
            dict(other.config),
            dict(other.env),
        )


def _frozen_config(config: object) -> Mapping[str, Any]:
    if not isinstance(config, Mapping):
        raise InvalidTargetError("config", f"must be a mapping, got {type(config).__name__}")
    try:
        encoded = orjson.dumps(dict(config))
    except TypeError as exc:
        raise InvalidTargetError("config", f"must be JSON: {exc}") from None
    if len(encoded) > MAX_CONFIG_BYTES:
        raise InvalidTargetError("config", f"larger than {MAX_CONFIG_BYTES} bytes as JSON")
    # A private copy, so a caller mutating its dict cannot change a journaled target.
    copied: dict[str, Any] = orjson.loads(encoded)
    return MappingProxyType(copied)


def _frozen_env(env: object) -> Mapping[str, str]:
    if not isinstance(env, Mapping):
        raise InvalidTargetError("env", f"must be a mapping, got {type(env).__name__}")
    if len(env) > MAX_ENV:
        raise InvalidTargetError("env", f"more than {MAX_ENV} variables")
    for key, value in env.items():
        if not isinstance(key, str) or not _ENV_NAME_RE.fullmatch(key):
            raise InvalidTargetError("env", f"bad variable name {str(key)[:80]!r}")
        if not isinstance(value, str) or len(value) > MAX_ENV_VALUE_CHARS or "\x00" in value:
            raise InvalidTargetError(
                f"env.{key}", f"must be a string of at most {MAX_ENV_VALUE_CHARS} characters"
            )
    return MappingProxyType(dict(env))


@dataclass(frozen=True, slots=True)
class UpdateLimits:
    """Bounds of one update. `max_saves`: journal saves of one update (across
    crashes and interrupted retries) before a crash loop is declared."""

    max_download_bytes: int = 2 << 30
    max_install_bytes: int = DEFAULT_MAX_INSTALL_BYTES  # the hub checks pushes against these
    max_install_files: int = DEFAULT_MAX_INSTALL_FILES
    download_attempts: int = 5
    max_saves: int = 20
    health_slack_s: float = 5.0  # on top of wait_healthy's own timeout
    progress_interval_s: float = 0.5
    # Delta updates (see _delta): keep the committed archive of each module
    # and ask the hub for a delta from it first. Rebuilding holds the base
    # and target tars in memory: a tar over max_delta_tar_bytes is fetched whole.
    delta_updates: bool = True
    max_delta_tar_bytes: int = 128 << 20

    def __post_init__(self) -> None:
        for name in ("max_download_bytes", "max_install_bytes", "max_install_files"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.download_attempts < 1 or self.max_saves < 1:
            raise ValueError("download_attempts and max_saves must be >= 1")
        if self.health_slack_s < 0 or self.progress_interval_s < 0:
            raise ValueError("health_slack_s and progress_interval_s must be >= 0")


@dataclass(frozen=True, slots=True)
class UpdateProgress:
    """One report of an update's progress, sent at every transition (and while downloading)."""

    module: str
    version: str
    digest: str
    state: State
    detail: str = ""
    bytes_done: int = 0
    bytes_total: int | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """How `ensure` (or a resumed update in `recover`) ended.

    `retryable` failures (network, an interruption by an agent restart) are
    not recorded: the next `ensure` tries again, resuming what it can.
    `remembered` is True when a recorded failure was returned without trying.
    """

    module: str
    version: str
    digest: str
    state: State
    error: str | None = None
    failed_in: State | None = None
    retryable: bool = False
    remembered: bool = False

    @property
    def ok(self) -> bool:
        return self.state is State.DONE


@dataclass(frozen=True, slots=True)
class InstalledRelease:
    """The committed version of a module and where it is installed."""

    target: ReleaseTarget
    install_dir: str  # a name inside <root>/modules/<name>/


@dataclass(frozen=True, slots=True)
class ReleaseFailure:
    """A release that failed on this node and will not be tried again by itself.

    A failure to start or to pass the health gate may be the config's or the
    env's as much as the release's: it holds only for the config and env it
    failed with (`deployment`), so a deployment that changes them is tried.
    Any other failure (the bytes, the signature, the unpack) holds for the
    release whatever its config (`deployment` None).
    """

    module: str
    version: str
    digest: str
    reason: str
    failed_in: State
    at_s: float  # Unix time of the failure
    deployment: str | None = None  # ReleaseTarget.deployment_key() it failed with

    def holds_for(self, target: "ReleaseTarget") -> bool:
        """True when `target` is what failed: not to be tried again."""
        if self.digest != target.digest:
            return False
        return self.deployment is None or self.deployment == target.deployment_key()
