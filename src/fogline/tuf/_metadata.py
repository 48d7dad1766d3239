"""TUF metadata as Fogline lays it out, built with python-tuf's Metadata API.

Roles (see docs/security.md):

* `root` (offline, a threshold of keys) names the keys of every top-level role;
* `targets` (signed by the same offline keys) holds no targets itself: it
  delegates each module to a role `module-<name>` whose keys (release keys)
  may sign the paths `<name>/*` and nothing else, with a threshold;
* `module-<name>` lists the module's releases as targets `<name>/<version>`
  with their length and sha256;
* `snapshot` and `timestamp`, signed online by the hub's key, short-lived.

Consistent snapshots are on: every version of every role but timestamp is
fetched as `<version>.<role>.json`, so a node never mixes metadata of two
repository states.
"""

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from securesystemslib.signer import CryptoSigner, Key, Signer, SSlibKey
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    Root,
    Signed,
    TargetFile,
    Targets,
)
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import JSONSerializer

from fogline.artifact import ReleaseKeyError, load_private_key

from ._errors import TufKeyError, TufMetadataError

ROOT: Final = Root.type
TARGETS: Final = Targets.type
SNAPSHOT: Final = "snapshot"
TIMESTAMP: Final = "timestamp"
TOP_LEVEL: Final = frozenset({ROOT, TARGETS, SNAPSHOT, TIMESTAMP})
MODULE_ROLE_PREFIX: Final = "module-"
SPEC_VERSION: Final = "1.0.31"
# A role's metadata is at most this big on upload (a module's role lists every
# version ever released: thousands fit).
MAX_METADATA_BYTES: Final = 2 * 1024 * 1024
ROLE_RE: Final = re.compile(r"(?:root|targets|snapshot|timestamp|module-[a-z0-9][a-z0-9-]{0,62})")
DEFAULT_ROOT_EXPIRY: Final = dt.timedelta(days=365)
DEFAULT_TARGETS_EXPIRY: Final = dt.timedelta(days=365)

_SERIALIZER: Final = JSONSerializer(compact=False)


def module_role(name: str) -> str:
    """The delegated role that may sign releases of module `name`."""
    return f"{MODULE_ROLE_PREFIX}{name}"


def target_path(name: str, version: str) -> str:
    """The TUF target path of a release: `<name>/<version>`."""
    return f"{name}/{version}"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def to_bytes(md: Metadata[Any]) -> bytes:
    """Metadata as the JSON bytes that are uploaded, stored and served unchanged."""
    return md.to_bytes(_SERIALIZER)


def parse(role: str, data: bytes, kind: type[Signed]) -> Metadata[Any]:
    """Metadata of `role` from bytes, checked to be of `kind` and named as `role`.

    Raises:
        TufMetadataError: too big, not TUF metadata, or another kind of role.
    """
    if len(data) > MAX_METADATA_BYTES:
        raise TufMetadataError(role, f"larger than {MAX_METADATA_BYTES} bytes")
    try:
        md: Metadata[Any] = Metadata.from_bytes(data)
    except DeserializationError as exc:
        raise TufMetadataError(role, f"not valid TUF metadata ({str(exc)[:200]})") from None
    if not isinstance(md.signed, kind):
        raise TufMetadataError(role, f"is {md.signed.type} metadata, expected {kind.type}")
    return md


def public_key(pub: Ed25519PublicKey) -> SSlibKey:
    """The TUF key of an Ed25519 public key (its keyid is TUF's default)."""
    return SSlibKey.from_crypto(pub)


def load_signer(path: Path) -> CryptoSigner:
    """A signer from an Ed25519 private key file (`fogline keys create`, `tuf init`).

    Raises:
        TufKeyError: missing, unreadable or not an Ed25519 key.
    """
    try:
        pair = load_private_key(path)
    except ReleaseKeyError as exc:
        raise TufKeyError(path, exc.reason) from None
    return CryptoSigner(pair.private_key, public_key(pair.public_key))


def signer_key(signer: Signer) -> Key:
    return signer.public_key


def new_root(
    root_keys: Sequence[Key],
    threshold: int,
    online_key: Key,
    *,
    expires: dt.datetime | None = None,
) -> Metadata[Root]:
    """Version 1 of root: `root_keys` (threshold) for root and targets, the
    hub's `online_key` for snapshot and timestamp; consistent snapshots on."""
    if not 1 <= threshold <= len(root_keys):
        raise TufMetadataError(ROOT, f"threshold must be 1..{len(root_keys)}, got {threshold}")
    root = Root(expires=expires or utcnow() + DEFAULT_ROOT_EXPIRY, consistent_snapshot=True)
    root.spec_version = SPEC_VERSION
    set_root_keys(root, root_keys, threshold)
    set_online_key(root, online_key)
    return Metadata(root)


def set_root_keys(root: Root, keys: Sequence[Key], threshold: int) -> None:
    """Make `keys` (threshold) the only keys of root and targets."""
    for role in (ROOT, TARGETS):
        for keyid in list(root.roles[role].keyids):
            root.revoke_key(keyid, role)
        for key in keys:
            root.add_key(key, role)
        root.roles[role].threshold = threshold


def set_online_key(root: Root, key: Key) -> None:
    """Make `key` the only key of snapshot and timestamp."""
    for role in (SNAPSHOT, TIMESTAMP):
        for keyid in list(root.roles[role].keyids):
            root.revoke_key(keyid, role)
        root.add_key(key, role)
        root.roles[role].threshold = 1


def new_targets(*, expires: dt.datetime | None = None) -> Metadata[Targets]:
    targets = Targets(expires=expires or utcnow() + DEFAULT_TARGETS_EXPIRY)
    targets.spec_version = SPEC_VERSION
    targets.delegations = Delegations(keys={}, roles={})
    return Metadata(targets)


def delegate_module(targets: Targets, name: str, keys: Sequence[Key], threshold: int) -> None:
    """Delegate the releases of module `name` (paths `<name>/*`) to `keys`,
    `threshold` of which must sign; replaces an earlier delegation of it."""
    if not 1 <= threshold <= len(keys):
        raise TufMetadataError(TARGETS, f"threshold must be 1..{len(keys)}, got {threshold}")
    if targets.delegations is None or targets.delegations.roles is None:
        targets.delegations = Delegations(keys={}, roles={})
    delegations = targets.delegations
    assert delegations.roles is not None
    role = DelegatedRole(
        name=module_role(name),
        keyids=[],
        threshold=threshold,
        terminating=True,
        paths=[f"{name}/*"],
    )
    delegations.roles[role.name] = role
    for key in keys:
        targets.add_key(key, role.name)
    _drop_unused_keys(delegations)


def _drop_unused_keys(delegations: Delegations) -> None:
    used = {k for r in (delegations.roles or {}).values() for k in r.keyids}
    for keyid in list(delegations.keys):
        if keyid not in used:
            del delegations.keys[keyid]


def add_release(
    role: Metadata[Targets],
    name: str,
    version: str,
    length: int,
    sha256_hex: str,
    *,
    bump: bool = True,
) -> None:
    """List release `name` `version` in a module role, bump its version (unless
    it is a new role's first), renew its expiry and drop its signatures."""
    path = target_path(name, version)
    role.signed.targets[path] = TargetFile(length=length, hashes={"sha256": sha256_hex}, path=path)
    if bump:
        role.signed.version += 1
    role.signed.expires = utcnow() + DEFAULT_TARGETS_EXPIRY
    role.signatures.clear()


def new_module_role(*, expires: dt.datetime | None = None) -> Metadata[Targets]:
    """Version 1 of a module's role, listing nothing yet."""
    targets = Targets(version=1, expires=expires or utcnow() + DEFAULT_TARGETS_EXPIRY)
    targets.spec_version = SPEC_VERSION
    return Metadata(targets)


def sign_with(md: Metadata[Any], signers: Iterable[Signer]) -> None:
    """Add each signer's signature to `md` (keeping those already there)."""
    for signer in signers:
        md.sign(signer, append=True)


def verify_signed_by(delegator: Metadata[Any], role: str, md: Metadata[Any]) -> None:
    """`md` carries a threshold of valid signatures of `role`'s keys in `delegator`.

    Raises:
        TufMetadataError: too few valid signatures (the counts named).
    """
    try:
        delegator.signed.verify_delegate(role, md.signed_bytes, md.signatures)
    except UnsignedMetadataError as exc:
        raise TufMetadataError(role, f"not signed by a threshold of its keys: {exc}") from None
