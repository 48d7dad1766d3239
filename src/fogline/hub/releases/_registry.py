"""Module releases on the hub: the artifact store, the checks a push must pass,
and module references in deployments (`release: thermo-filter@1.2.0`).

A push is refused, with a code naming the reason, when:

    malformed_signature  422  no or unreadable `x-fogline-signature` envelope
    untrusted_key        403  signed by a key no applied ReleaseKey trusts, or by a
                              key whose scope (`modules:`) does not cover the module
    bad_signature        422  the signature does not verify
    digest_mismatch      422  the bytes uploaded are not the bytes signed
    bad_archive          422  not a release archive, an invalid module file, or an
                              archive the node's unpacker refuses (the member and
                              the reason: depth, traversal, links, devices,
                              entries, bytes unpacked, time to check)
    release_mismatch     422  the archive's module file names another name/version
    version_conflict     409  this name and version were pushed with other bytes
    too_large            413  over MAX_RELEASE_BYTES

FoglineError
  ApiError (hub._errors)
    ReleaseRejectedError  422/403/409/413/503, `code` as in the table above
"""

import base64
import binascii
import contextlib
import copy
import datetime as dt
import hashlib
import os
import re
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from fogline.artifact import (
    DEFAULT_MAX_INSTALL_BYTES,
    DEFAULT_MAX_INSTALL_FILES,
    ArtifactError,
    SignatureEnvelope,
    UnsafeArchiveError,
    UntrustedReleaseError,
    check_release,
    delete_tree,
    find_unpack_leftovers,
    key_id,
    load_public_key,
    parse_semver,
    verify_release,
)
from fogline.manifest import BlockError, ManifestError, Origin, Problem
from fogline.protocol import KeyScope, union_of_patterns

from .._errors import ApiError
from .._schema import ReleaseKeyRow, ReleaseRow

MAX_RELEASE_BYTES: Final = 512 * 1024 * 1024
SIGNATURE_HEADER: Final = "x-fogline-signature"
DIGEST_RE: Final = re.compile(r"sha256:[0-9a-f]{64}", re.ASCII)  # always fullmatch
# Upload chunks are gathered into blocks this big before a worker thread
# hashes and writes them: few thread hops, bounded memory per upload.
_WRITE_BLOCK: Final = 1024 * 1024
# A partial upload nobody wrote to for this long was left by a crash.
STALE_UPLOAD_S: Final = 3600.0
# base64 of a 4 KiB envelope, the most `SignatureEnvelope.from_json` accepts.
_MAX_SIGNATURE_HEADER: Final = 6 * 1024
# The whole archive is checked at push with the node's own unpacker checks,
# against a default node's limits. File bytes are counted, not written, so a
# check costs at most DEFAULT_MAX_INSTALL_FILES inodes and this much time
# (decompressing 4 GiB takes seconds); a few run at once, the rest wait.
MAX_CHECK_SECONDS: Final = 120.0
_CHECKS: Final = threading.BoundedSemaphore(2)
_MEMBER_SHOWN: Final = 120


class ReleaseRejectedError(ApiError):
    """A push or lookup the hub refuses; `code` names the reason (module docstring)."""

    status = 422

    def __init__(
        self, code: str, message: str, *, status: int = 422, field: str | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.code, self.status = code, status


# -- the artifact store ----------------------------------------------------------------


def check_digest(digest: str) -> str:
    """Return `digest` if it is `sha256:<64 lowercase hex>`; it becomes a file path.

    Raises:
        ReleaseRejectedError: anything else (422), so `../x` never reaches the disk.
    """
    if not DIGEST_RE.fullmatch(digest):
        raise ReleaseRejectedError(
            "invalid",
            f"digest must be sha256:<64 lowercase hex> (got {digest[:80]!r})",
            field="digest",
        )
    return digest


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class StagedArtifact:
    """An upload on disk, hashed while it streamed in, not yet in the store."""

    path: Path
    digest: str
    size: int


class ArtifactStore:
    """Archives by content: `ROOT/sha256/<2 hex>/<62 hex>`, written atomically.

    Uploads stream into `ROOT/tmp/` and are renamed into place after a fsync,
    so a file under `sha256/` is always complete; a crash leaves at most a
    `tmp/upload-*.part` file behind, never a truncated artifact.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, digest: str) -> Path:
        hexdigest = check_digest(digest).removeprefix("sha256:")
        return self.root / "sha256" / hexdigest[:2] / hexdigest[2:]

    def has(self, digest: str) -> bool:
        return self.path_for(digest).is_file()

    async def receive(self, chunks: AsyncIterator[bytes], *, max_bytes: int) -> StagedArtifact:
        """Stream `chunks` to a temporary file, hashing as they arrive.

        Raises:
            ReleaseRejectedError: more than `max_bytes` (413); the file is removed.
            OSError: the disk is full or not writable; the file is removed.
        """
        tmp = self.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=tmp)
        path, hasher, size = Path(name), hashlib.sha256(), 0
        block = bytearray()

        def write(data: bytes) -> None:
            hasher.update(data)
            _write_all(fd, data)

        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise ReleaseRejectedError(
                        "too_large", f"release archives are at most {max_bytes} bytes", status=413
                    )
                block += chunk
                if len(block) >= _WRITE_BLOCK:
                    await run_in_threadpool(write, bytes(block))
                    block.clear()
            await run_in_threadpool(write, bytes(block))
            await run_in_threadpool(os.fsync, fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            raise
        os.close(fd)
        return StagedArtifact(path, "sha256:" + hasher.hexdigest(), size)

    def commit(self, staged: StagedArtifact) -> Path:
        """Move a verified upload to its content address (same bytes: a no-op)."""
        target = self.path_for(staged.digest)
        new_dirs = [d for d in (target.parent.parent, target.parent) if not d.exists()]
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(staged.path, 0o644)
        os.replace(staged.path, target)
        # The rename, and any directory made for it, must survive a power cut
        # before the database row that points here is committed.
        for directory in (target.parent, *(d.parent for d in new_dirs)):
            _fsync_dir(directory)
        return target

    @staticmethod
    def discard(staged: StagedArtifact) -> None:
        staged.path.unlink(missing_ok=True)

    def sweep_partial_uploads(self, older_than_s: float = STALE_UPLOAD_S) -> int:
        """Remove `tmp/upload-*.part` files and check trees a crash left behind;
        returns how many.

        Only files untouched for `older_than_s`: an upload still streaming
        (here or in a replica sharing this directory) writes to its file.
        """
        cutoff = time.time() - older_than_s
        removed = 0
        tmp = self.root / "tmp"
        if not tmp.is_dir():
            return 0
        for path in tmp.glob("upload-*.part"):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        # Trees a check at push left when the hub died mid-check.
        for path in find_unpack_leftovers(tmp):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    delete_tree(path)
                    removed += 1
        return removed


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# -- checks on a push ------------------------------------------------------------------


def parse_signature_header(value: str | None) -> SignatureEnvelope:
    """The envelope from the `x-fogline-signature` header (base64 of the `.sig` JSON).

    Raises:
        ReleaseRejectedError: missing or malformed (422 malformed_signature).
    """
    if not value:
        raise ReleaseRejectedError(
            "malformed_signature",
            f"missing the {SIGNATURE_HEADER} header: base64 of the release's .sig file",
        )
    if len(value) > _MAX_SIGNATURE_HEADER:
        raise ReleaseRejectedError("malformed_signature", f"{SIGNATURE_HEADER} is too long")
    try:
        raw = base64.b64decode(value, validate=True)
        return SignatureEnvelope.from_json(raw)
    except (binascii.Error, ValueError) as exc:
        raise ReleaseRejectedError(
            "malformed_signature", f"{SIGNATURE_HEADER} is not base64 of a signature envelope"
        ) from exc
    except UntrustedReleaseError as exc:
        raise ReleaseRejectedError("malformed_signature", str(exc)) from exc


def trusted_keys(session: Session) -> dict[str, Ed25519PublicKey]:
    """Every applied ReleaseKey, by key id."""
    return {kid: public_key for kid, (public_key, _names, _scope) in _keys_by_id(session).items()}


def _keys_by_id(session: Session) -> dict[str, tuple[Ed25519PublicKey, list[str], KeyScope]]:
    """Key id -> (public key, the ReleaseKey names listing it, its scope). A
    key listed under several names may sign what any of them allows."""
    listings: dict[str, tuple[Ed25519PublicKey, list[str], list[list[str] | None]]] = {}
    for row in session.scalars(select(ReleaseKeyRow).order_by(ReleaseKeyRow.name)):
        public_key = load_public_key(row.public_key)
        entry = listings.setdefault(key_id(public_key), (public_key, [], []))
        entry[1].append(row.name)
        entry[2].append(row.modules)
    return {
        kid: (public_key, names, KeyScope.of(union_of_patterns(scopes)))
        for kid, (public_key, names, scopes) in listings.items()
    }


def check_envelope(session: Session, envelope: SignatureEnvelope) -> ReleaseRow | None:
    """Refuse what can be refused before any byte is uploaded.

    Returns the release already pushed with this name, version and digest
    (an idempotent re-push), or None.

    Raises:
        ReleaseRejectedError: untrusted key, or a key whose scope does not
            cover the module (403), bad signature (422), or the name and
            version already pushed with another digest (409).
    """
    known = _keys_by_id(session)
    keys = {kid: public_key for kid, (public_key, _names, _scope) in known.items()}
    if envelope.keyid not in keys:
        raise ReleaseRejectedError(
            "untrusted_key",
            f"signed by {envelope.keyid}, which no applied ReleaseKey trusts "
            "(apply the key's ReleaseKey manifest first)",
            status=403,
        )
    _public_key, names, scope = known[envelope.keyid]
    if not scope.covers(envelope.name):
        raise ReleaseRejectedError(
            "untrusted_key",
            f"signed by {envelope.keyid} (ReleaseKey {', '.join(names)}), which may sign only "
            f"modules matching {scope.describe()}, not module {envelope.name!r}",
            status=403,
        )
    try:
        # The signature over the envelope's own digest; that the uploaded
        # bytes have this digest is checked once they are in.
        verify_release(envelope.digest, envelope, keys)
    except UntrustedReleaseError as exc:
        raise ReleaseRejectedError("bad_signature", str(exc)) from exc
    existing = find_release(session, envelope.name, str(envelope.version))
    if existing is not None and existing.digest != envelope.digest:
        raise ReleaseRejectedError(
            "version_conflict",
            f"{envelope.name} {envelope.version} was already pushed as {existing.digest}; "
            "a pushed version never changes: bump the version",
            status=409,
        )
    return existing


def check_archive(staged: StagedArtifact, envelope: SignatureEnvelope, scratch_dir: Path) -> None:
    """The uploaded bytes are the signed ones, every member passes the node's
    unpacker checks, and the module file agrees with the signature.

    Blocking (seconds for a large archive): call it in a worker thread. The
    check's temporary tree lives in `scratch_dir` and is always deleted.

    Raises:
        ReleaseRejectedError: digest_mismatch, bad_archive or release_mismatch (422).
    """
    if staged.digest != envelope.digest:
        raise ReleaseRejectedError(
            "digest_mismatch",
            f"the uploaded archive is {staged.digest}, the signature is for {envelope.digest} "
            "(changed after signing, or corrupted in transit)",
        )
    try:
        with _CHECKS:
            spec = check_release(
                staged.path,
                scratch_dir,
                max_bytes=DEFAULT_MAX_INSTALL_BYTES,
                max_files=DEFAULT_MAX_INSTALL_FILES,
                max_seconds=MAX_CHECK_SECONDS,
            )
    except UnsafeArchiveError as exc:
        raise ReleaseRejectedError("bad_archive", _unsafe_reason(exc)) from exc
    except ArtifactError as exc:
        reason = str(exc).replace(str(staged.path), "archive")
        raise ReleaseRejectedError("bad_archive", reason) from exc
    if spec.name != envelope.name or str(spec.version) != str(envelope.version):
        raise ReleaseRejectedError(
            "release_mismatch",
            f"the archive's fogline-module.yaml is {spec.name} {spec.version}, "
            f"the signature is for {envelope.name} {envelope.version}",
        )


def _unsafe_reason(exc: UnsafeArchiveError) -> str:
    """The refusal without the hub's temporary path; a long member name cut short."""
    if exc.member is None:
        return f"archive: {exc.reason}"
    member = exc.member if len(exc.member) <= _MEMBER_SHOWN else exc.member[:_MEMBER_SHOWN] + "..."
    return f"archive member {member!r}: {exc.reason}"


def new_release_row(
    envelope: SignatureEnvelope, size: int, pushed_by: str, now: dt.datetime
) -> ReleaseRow:
    return ReleaseRow(
        name=envelope.name,
        version=str(envelope.version),
        digest=envelope.digest,
        size=size,
        key_id=envelope.keyid,
        signature=envelope.model_dump(mode="json"),
        pushed_at=now,
        pushed_by=pushed_by,
    )


# -- lookups ---------------------------------------------------------------------------


class ReleaseView(BaseModel):
    """A pushed release as the API shows it; `signature` is the `.sig` envelope."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: str
    digest: str
    size: int
    key_id: str
    signature: dict[str, Any]
    pushed_at: dt.datetime
    pushed_by: str


def release_view(row: ReleaseRow) -> ReleaseView:
    return ReleaseView(
        name=row.name,
        version=row.version,
        digest=row.digest,
        size=row.size,
        key_id=row.key_id,
        signature=dict(row.signature),
        pushed_at=row.pushed_at,
        pushed_by=row.pushed_by,
    )


def find_release(session: Session, name: str, version: str) -> ReleaseRow | None:
    return session.scalar(
        select(ReleaseRow).where(ReleaseRow.name == name, ReleaseRow.version == version)
    )


def find_by_digest(session: Session, digest: str) -> ReleaseRow | None:
    return session.scalar(select(ReleaseRow).where(ReleaseRow.digest == digest).limit(1))


def list_releases(session: Session) -> list[ReleaseRow]:
    """All releases by name, then by semver precedence (1.2.0 before 1.10.0)."""
    rows = session.scalars(select(ReleaseRow)).all()
    return sorted(rows, key=lambda r: (r.name, parse_semver(r.version)))


# -- module references in deployments --------------------------------------------------

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
        entries = document.get("modules") if isinstance(document, Mapping) else None
        return {
            str(e.get("name")): str(e.get("version"))
            for e in entries or ()
            if isinstance(e, Mapping) and isinstance(e.get("version"), str)
        }

    old, new = versions(before), versions(after)
    found: dict[str, tuple[str, str]] = {}
    for name in old.keys() & new.keys():
        try:
            if parse_semver(new[name]).precedence_key() < parse_semver(old[name]).precedence_key():
                found[name] = (old[name], new[name])
        except ValueError:
            continue  # not written by this hub's compiler: nothing to compare
    return found
