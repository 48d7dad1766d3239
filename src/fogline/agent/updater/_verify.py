"""Pure checks of a release against its target: bytes in, verdict out, no I/O."""

import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING

from fogline.artifact import (
    ModuleSpec,
    UntrustedReleaseError,
    parse_semver,
    supports_architecture,
)
from fogline.protocol import KeyScope

from ._errors import ReleaseRejectedError, TufRefusedError
from ._models import ReleaseTarget
from ._tuf import TrustedTarget

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from fogline.artifact import VerifiedRelease


def check_download(target: ReleaseTarget, held_digest: str) -> None:
    """The downloaded bytes are the ones the target names.

    Raises:
        ReleaseRejectedError: the digest differs (tampered or corrupted).
    """
    if not hmac.compare_digest(held_digest, target.digest):
        raise ReleaseRejectedError(
            f"digest mismatch: expected {target.digest}, downloaded {held_digest}"
        )


def check_signature(
    target: ReleaseTarget,
    held_digest: str,
    trusted_keys: Mapping[str, "Ed25519PublicKey"],
    key_scopes: Mapping[str, KeyScope] | None = None,
) -> "VerifiedRelease":
    """The bytes held are signed by a trusted key as exactly this name and
    version, and the key's scope covers the module.

    Raises:
        UntrustedReleaseError: unsigned, untrusted key, bad signature, digest
            mismatch, a signature for another name or version, or a key
            whose scope does not cover the module.
        ReleaseRejectedError: the bytes are not the target's.
    """
    # Imported when an update comes, not at idle (see fogline/_lazy.py).
    from fogline.artifact import verify_release

    check_download(target, held_digest)
    verified = verify_release(
        held_digest,
        target.signature,
        trusted_keys,
        expect_name=target.name,
        expect_version=target.version,
    )
    check_key_scope(verified, key_scopes or {})
    return verified


def check_trusted(
    target: ReleaseTarget, trusted: TrustedTarget, held_digest: str | None = None
) -> None:
    """The target's digest (and the bytes held, when given) are what TUF metadata signed.

    Raises:
        TufRefusedError: the desired state names other bytes than the metadata.
        ReleaseRejectedError: the bytes held are not the signed ones.
    """
    if not hmac.compare_digest(target.digest, trusted.digest):
        raise TufRefusedError(
            f"{target.name}/{target.version}",
            f"the desired state names {target.digest}, TUF metadata signs {trusted.digest}",
        )
    if held_digest is not None and not hmac.compare_digest(held_digest, trusted.digest):
        raise ReleaseRejectedError(
            f"digest mismatch: TUF metadata signs {trusted.digest}, held {held_digest}"
        )


def check_key_scope(verified: "VerifiedRelease", key_scopes: Mapping[str, KeyScope]) -> None:
    """The key that signed `verified` may sign its module (a key absent from
    `key_scopes` may sign any).

    Raises:
        UntrustedReleaseError: the key's scope does not cover the module.
    """
    scope = key_scopes.get(verified.keyid, KeyScope())
    if not scope.covers(verified.name):
        raise UntrustedReleaseError(
            f"signed by {verified.keyid}, which may sign only modules matching {scope.describe()}"
        )


def check_spec(target: ReleaseTarget, spec: ModuleSpec, machine: str | None) -> None:
    """The archive's own module file agrees with the signed name and version,
    and the release runs on this machine (`uname -m`; None skips the check).

    Raises:
        ReleaseRejectedError: name, version or architecture do not fit.
    """
    if spec.name != target.name or str(spec.version) != target.version:
        raise ReleaseRejectedError(
            f"the archive's fogline-module.yaml says {spec.name} {spec.version}"
        )
    if machine is not None and not supports_architecture(spec, machine):
        raise ReleaseRejectedError(
            f"built for {', '.join(spec.architectures)}, this node is {machine}"
        )


def health_timeout_s(target: ReleaseTarget, spec: ModuleSpec) -> float:
    """How long the new version gets to become healthy: the target's override,
    else the release's startGrace plus its health probe timeout."""
    if target.health_timeout_s is not None:
        return target.health_timeout_s
    probe_s = spec.health.timeout_s if spec.health is not None else 0.0
    return spec.start_grace_s + probe_s


def check_downgrade(target: ReleaseTarget, installed_version: str | None) -> None:
    """A target below the installed version (semver precedence; build
    metadata does not count) needs `allow_downgrade`. Re-installing the same
    version, or any upgrade, needs nothing.

    Raises:
        ReleaseRejectedError: an older version without allow_downgrade.
    """
    if installed_version is None or target.allow_downgrade:
        return
    wanted = parse_semver(target.version).precedence_key()
    try:
        installed = parse_semver(installed_version).precedence_key()
    except ValueError:
        return  # an unparsable record (written by hand): nothing to compare against
    if wanted < installed:
        raise ReleaseRejectedError(
            f"refusing to downgrade from the installed "
            f"{installed_version}; set allowDowngrade: true on this module in the deployment "
            f"to allow it (the node stays on {installed_version})"
        )
