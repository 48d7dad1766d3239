"""The offline TUF directory: root keys, root history and top-level targets.

    DIR/root-key-<n>.pem       Ed25519 private keys of root and targets (0600)
    DIR/retired/               keys replaced by a rotation (kept, 0600)
    DIR/<version>.root.json    every root version (the hub needs the chain)
    DIR/root.json              the newest root: what nodes pin
    DIR/targets.json           top-level targets: the module delegations

The directory belongs on a machine that never talks to the hub (a laptop
kept offline, a hardware token's host); only its JSON files travel.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from securesystemslib.signer import CryptoSigner, Key, Signer
from tuf.api.metadata import Metadata, Root, Targets

from fogline.artifact import generate_release_key
from fogline.security import write_public_file

from ._errors import TufError, TufMetadataError
from ._metadata import (
    DEFAULT_ROOT_EXPIRY,
    DEFAULT_TARGETS_EXPIRY,
    ROOT,
    TARGETS,
    delegate_module,
    load_signer,
    new_root,
    new_targets,
    parse,
    public_key,
    set_online_key,
    set_root_keys,
    sign_with,
    to_bytes,
    utcnow,
    verify_signed_by,
)

KEY_GLOB: Final = "root-key-*.pem"
MAX_KEYS: Final = 16


@dataclass(frozen=True, slots=True)
class OfflineRepo:
    """The offline directory `root` (see the module docstring)."""

    root: Path

    @property
    def root_file(self) -> Path:
        return self.root / "root.json"

    @property
    def targets_file(self) -> Path:
        return self.root / "targets.json"

    def root_md(self) -> Metadata[Root]:
        return parse(ROOT, _read(self.root_file), Root)

    def targets_md(self) -> Metadata[Targets]:
        return parse(TARGETS, _read(self.targets_file), Targets)

    def root_versions(self) -> list[Path]:
        """Every `<version>.root.json`, oldest first."""
        found = []
        for path in self.root.glob("*.root.json"):
            head = path.name.split(".", 1)[0]
            if head.isdigit():
                found.append((int(head), path))
        return [p for _, p in sorted(found)]

    def signers(self) -> list[CryptoSigner]:
        return [load_signer(p) for p in sorted(self.root.glob(KEY_GLOB))]

    # -- ceremonies ------------------------------------------------------------------

    def init(self, keys: int, threshold: int, online_key: Key) -> Metadata[Root]:
        """Generate `keys` root keys, write root v1 (threshold `threshold`,
        `online_key` for snapshot and timestamp) and an empty targets v1.

        Raises:
            TufError: the directory already holds a repository, or bad counts.
        """
        if not 1 <= keys <= MAX_KEYS:
            raise TufError(f"--keys must be 1..{MAX_KEYS}, got {keys}")
        if not 1 <= threshold <= keys:
            raise TufError(f"--threshold must be 1..{keys}, got {threshold}")
        if self.root_file.exists() or any(self.root.glob(KEY_GLOB)):
            raise TufError(f"{self.root}: already holds a TUF repository; refusing to overwrite")
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        signers = self._new_keys(keys)
        md = new_root([s.public_key for s in signers], threshold, online_key)
        sign_with(md, signers)
        self._write_root(md)
        targets = new_targets()
        sign_with(targets, signers)
        write_public_file(self.targets_file, to_bytes(targets))
        return md

    def delegate(self, module: str, keys: list[Key], threshold: int) -> Metadata[Targets]:
        """Delegate module `module` to `keys` (threshold) in a new targets version."""
        targets = self.targets_md()
        delegate_module(targets.signed, module, keys, threshold)
        return self._resign_targets(targets)

    def rotate_root(
        self, *, keys: int | None, threshold: int | None, online_key: Key | None
    ) -> Metadata[Root]:
        """A new root version signed by a threshold of the old root keys and of
        the new ones. `keys`: replace every root key by that many new ones (the
        old key files move to retired/); `online_key`: a new hub key. Targets is
        re-signed by the new keys.

        Raises:
            TufError: nothing to change, or the old keys here are below threshold.
        """
        old = self.root_md()
        old_signers = self._signers_of(old.signed, ROOT)
        new = parse(ROOT, to_bytes(old), Root)
        new.signatures.clear()
        signed = new.signed
        signed.version += 1
        signed.expires = utcnow() + DEFAULT_ROOT_EXPIRY
        new_signers: list[Signer] = list(old_signers)
        retire: list[Path] = []
        if keys is not None:
            if not 1 <= keys <= MAX_KEYS:
                raise TufError(f"--keys must be 1..{MAX_KEYS}, got {keys}")
            retire = sorted(self.root.glob(KEY_GLOB))
            fresh = self._new_keys(keys, start=_next_index(retire))
            new_signers = list(fresh)
        wanted = threshold or signed.roles[ROOT].threshold
        set_root_keys(signed, [s.public_key for s in new_signers], wanted)
        if online_key is not None:
            set_online_key(signed, online_key)
        sign_with(new, {id(s): s for s in [*old_signers, *new_signers]}.values())
        verify_signed_by(old, ROOT, new)
        verify_signed_by(new, ROOT, new)
        self._write_root(new)
        if retire:
            (self.root / "retired").mkdir(mode=0o700, exist_ok=True)
            for path in retire:
                path.rename(self.root / "retired" / path.name)
        self._resign_targets(self.targets_md())
        return new

    # -- helpers -----------------------------------------------------------------------

    def _resign_targets(self, targets: Metadata[Targets]) -> Metadata[Targets]:
        root = self.root_md()
        targets.signatures.clear()
        targets.signed.version += 1
        targets.signed.expires = utcnow() + DEFAULT_TARGETS_EXPIRY
        sign_with(targets, self._signers_of(root.signed, TARGETS))
        verify_signed_by(root, TARGETS, targets)
        write_public_file(self.targets_file, to_bytes(targets))
        return targets

    def _signers_of(self, root: Root, role: str) -> list[CryptoSigner]:
        """The key files here that belong to `role`, at least its threshold."""
        keyids = set(root.roles[role].keyids)
        signers = [s for s in self.signers() if s.public_key.keyid in keyids]
        if len(signers) < root.roles[role].threshold:
            raise TufMetadataError(
                role,
                f"{self.root} holds {len(signers)} of its keys, "
                f"the threshold is {root.roles[role].threshold}",
            )
        return signers

    def _new_keys(self, count: int, *, start: int = 1) -> list[CryptoSigner]:
        signers = []
        for n in range(start, start + count):
            pair = generate_release_key()
            pair.write_private_key(self.root / f"root-key-{n}.pem")
            signers.append(CryptoSigner(pair.private_key, public_key(pair.public_key)))
        return signers

    def _write_root(self, md: Metadata[Root]) -> None:
        data = to_bytes(md)
        write_public_file(self.root / f"{md.signed.version}.root.json", data)
        write_public_file(self.root_file, data)


def _next_index(paths: list[Path]) -> int:
    numbers = [int(p.stem.rsplit("-", 1)[-1]) for p in paths if p.stem.rsplit("-", 1)[-1].isdigit()]
    return max(numbers, default=0) + 1


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TufError(f"{path}: {exc.strerror or exc}") from None
