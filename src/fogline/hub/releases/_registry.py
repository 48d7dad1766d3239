"""The release registry: the checks a push must pass (codes in `_errors`), and
lookups of pushed releases.
"""

import base64
import binascii
import datetime as dt
import threading
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session

from fogline.artifact import (
    DEFAULT_MAX_INSTALL_BYTES,
    DEFAULT_MAX_INSTALL_FILES,
    ArtifactError,
    SignatureEnvelope,
    UnsafeArchiveError,
    UntrustedReleaseError,
    check_release,
    key_id,
    load_public_key,
    parse_semver,
    verify_release,
)
from fogline.protocol import SIGNATURE_HEADER, KeyScope, union_of_patterns

from .._schema import ReleaseKeyRow, ReleaseRow
from ._artifacts import StagedArtifact
from ._errors import ReleaseRejectedError

MAX_RELEASE_BYTES: Final = 512 * 1024 * 1024


# base64 of a 4 KiB envelope, the most `SignatureEnvelope.from_json` accepts.
_MAX_SIGNATURE_HEADER: Final = 6 * 1024
# The whole archive is checked at push with the node's own unpacker checks,
# against a default node's limits. File bytes are counted, not written, so a
# check costs at most DEFAULT_MAX_INSTALL_FILES inodes and this much time
# (decompressing 4 GiB takes seconds); a few run at once, the rest wait.
MAX_CHECK_SECONDS: Final = 120.0
_CHECKS: Final = threading.BoundedSemaphore(2)
_MEMBER_SHOWN: Final = 120


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


def release_key_id(public_key: str) -> str:
    """The key id (`ed25519:...`) of an applied ReleaseKey's public key."""
    return key_id(load_public_key(public_key))


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
    # At push only: advisories a VulnerabilityPolicy with `onPush: mark` blocks.
    blocked_by: list[str] = []


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
