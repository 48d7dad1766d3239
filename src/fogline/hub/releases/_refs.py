"""Module references in deployments (`release: thermo-filter@1.2.0`): the
schema of a `spec.modules` entry, resolving references to pushed releases, and
the version changes an apply audits.
"""

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError
from sqlalchemy.orm import Session

from fogline.artifact import DIGEST_RE, parse_semver
from fogline.manifest import BlockError, ManifestError, Origin, Problem
from fogline.protocol import DesiredDocument

from .._schema import ReleaseRow
from ._registry import find_by_digest, find_release

_MODULE_KEYS: Final = ("name", "release", "config", "env", "allowDowngrade")
_MODULE_NAME_RE: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
_ENV_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}", re.ASCII)
_MAX_ENV: Final = 128
_MAX_ENV_VALUE_CHARS: Final = 4096
_MAX_REF_CHARS: Final = 200


@dataclass(frozen=True, slots=True)
class ModuleRef:
    """A parsed `release:` value: by name and version, or by digest."""

    name: str | None = None
    version: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        return self.digest or f"{self.name}@{self.version}"


def parse_module_ref(text: object) -> ModuleRef:
    """Parse `thermo-filter@1.2.0` or `sha256:<64 hex>`.

    Raises:
        ValueError: anything else; the message shows both accepted forms.
    """
    expected = "must be NAME@VERSION (like thermo-filter@1.2.0) or sha256:<64 hex digits>"
    if not isinstance(text, str):
        raise ValueError(f"{expected} (got {type(text).__name__})")
    if len(text) > _MAX_REF_CHARS:
        raise ValueError(f"{expected} (got {len(text)} characters)")
    if text.startswith("sha256:"):
        if not DIGEST_RE.fullmatch(text):
            raise ValueError(f"{expected} (got {text!r}: not 64 lowercase hex digits)")
        return ModuleRef(digest=text)
    name, at, version = text.partition("@")
    if not at:
        raise ValueError(f"{expected} (got {text!r})")
    if not _MODULE_NAME_RE.fullmatch(name):
        raise ValueError(f"{expected} (got {text!r}: {name!r} is not a module name)")
    parse_semver(version)  # its ValueError says what a version looks like
    return ModuleRef(name=name, version=version)


def _check_env(env: object) -> None:
    if not isinstance(env, Mapping):
        raise BlockError(("env",), f"must be a mapping of names to strings (got {env!r:.80})")
    if len(env) > _MAX_ENV:
        raise BlockError(("env",), f"at most {_MAX_ENV} variables (got {len(env)})")
    for key, value in env.items():
        if not isinstance(key, str) or not _ENV_NAME_RE.fullmatch(key):
            raise BlockError(
                ("env", str(key)),
                "variable names are letters, digits and '_', not starting with a digit",
            )
        if key.upper().startswith("FOGLINE_"):
            raise BlockError(("env", key), "names starting with FOGLINE_ are set by the agent")
        if not isinstance(value, str):
            raise BlockError(
                ("env", key), f"must be a string; quote it (got {type(value).__name__})"
            )
        if len(value) > _MAX_ENV_VALUE_CHARS or "\x00" in value:
            raise BlockError(("env", key), f"at most {_MAX_ENV_VALUE_CHARS} characters and no NUL")


def validate_module_block(block: Mapping[str, Any]) -> None:
    """Check one `spec.modules` entry: `name`, `release`, optional `config`,
    `env` and `allowDowngrade` (a boolean: may nodes go below their installed version).

    A `BlockValidators.module` callable; `name` is already checked by the
    manifest schema.

    Raises:
        BlockError: an unknown field, a bad `release` or a name that differs
            from it, `config` not a mapping, `env` not names to strings,
            `allowDowngrade` not a boolean.
    """
    for key in block:
        if key not in _MODULE_KEYS:
            raise BlockError((key,), f"unknown field; a module entry has {', '.join(_MODULE_KEYS)}")
    if "release" not in block:
        raise BlockError(
            ("release",), "required field is missing (NAME@VERSION or sha256:<digest>)"
        )
    try:
        ref = parse_module_ref(block["release"])
    except ValueError as exc:
        raise BlockError(("release",), str(exc)) from None
    if ref.name is not None and ref.name != block.get("name"):
        raise BlockError(
            ("release",),
            f"release {ref} is module {ref.name!r}, but this entry is named {block.get('name')!r}",
        )
    if "config" in block and not isinstance(block["config"], Mapping):
        raise BlockError(("config",), "must be a mapping")
    if "env" in block:
        _check_env(block["env"])
    if "allowDowngrade" in block and not isinstance(block["allowDowngrade"], bool):
        raise BlockError(
            ("allowDowngrade",), f"must be true or false (got {block['allowDowngrade']!r:.40})"
        )


def _resolve_one(session: Session, entry: object) -> ReleaseRow:
    if not isinstance(entry, Mapping):
        raise ValueError("a module entry must be a mapping")
    ref = parse_module_ref(entry.get("release"))
    name = entry.get("name")
    if ref.digest is not None:
        row = find_by_digest(session, ref.digest)
        if row is None:
            raise ValueError(f"no release with digest {ref.digest} has been pushed")
    else:
        assert ref.name is not None and ref.version is not None
        row = find_release(session, ref.name, ref.version)
        if row is None:
            raise ValueError(
                f"release {ref} has not been pushed (fogline release push); see fogline release ls"
            )
    if row.name != name:
        raise ValueError(f"release {ref} is module {row.name!r}, but this entry is named {name!r}")
    return row


def resolve_module_refs(
    session: Session, deployment_document: Mapping[str, Any], *, origin: Origin | None = None
) -> dict[str, Any]:
    """A copy of a Deployment document whose module entries carry what nodes need.

    Every `spec.modules[i]` gains `version`, `digest` and `signature` (the
    `.sig` envelope as a JSON object) of the release its `release:` names.
    `origin` (the Deployment's) places the problems in the operator's file.

    Raises:
        ManifestError: one Problem per entry whose release is malformed,
            unknown, or belongs to another module (`spec.modules[i].release`).
    """
    resolved: dict[str, Any] = copy.deepcopy(dict(deployment_document))
    spec = resolved.get("spec")
    modules = spec.get("modules") if isinstance(spec, dict) else None
    if not modules:
        return resolved
    name = resolved.get("metadata", {}).get("name", "?")
    file = origin.file if origin else f"deployment/{name}"
    line, column = (origin.line, origin.column) if origin else (None, None)
    problems: list[Problem] = []
    for i, entry in enumerate(modules):
        try:
            row = _resolve_one(session, entry)
        except ValueError as exc:
            problems.append(Problem(file, line, column, f"spec.modules[{i}].release", str(exc)))
            continue
        entry["version"], entry["digest"] = row.version, row.digest
        entry["signature"] = dict(row.signature)
    if problems:
        raise ManifestError(problems)
    return resolved


def downgrade_allowances(deployment_document: Mapping[str, Any]) -> dict[str, str]:
    """The modules of a Deployment document that say `allowDowngrade: true`,
    with the release each names: what an apply audits."""
    spec = deployment_document.get("spec")
    modules = spec.get("modules") if isinstance(spec, Mapping) else None
    found: dict[str, str] = {}
    for entry in modules or ():
        if isinstance(entry, Mapping) and entry.get("allowDowngrade") is True:
            found[str(entry.get("name"))] = str(entry.get("release"))
    return found


def module_downgrades(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> dict[str, tuple[str, str]]:
    """Modules whose version goes down from desired document `before` to
    `after`, as name -> (from, to), by semver precedence."""

    def versions(document: Mapping[str, Any] | None) -> dict[str, str]:
        try:
            parsed = DesiredDocument.model_validate(document) if document is not None else None
        except ValidationError:
            return {}  # not written by this hub's compiler: nothing to compare
        return {entry.name: entry.version for entry in parsed.modules} if parsed else {}

    old, new = versions(before), versions(after)
    found: dict[str, tuple[str, str]] = {}
    for name in old.keys() & new.keys():
        try:
            if parse_semver(new[name]).precedence_key() < parse_semver(old[name]).precedence_key():
                found[name] = (old[name], new[name])
        except ValueError:
            continue  # not written by this hub's compiler: nothing to compare
    return found
