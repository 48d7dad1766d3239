"""The rehearsal hub's TUF repository: the production update path, in miniature.

A rehearsed fleet must verify updates as the real one does, so the
throwaway hub gets what an operator's ceremony gives a hub
(docs/security.md): a root generated for the rehearsal (one key, kept in
the rehearsal's temp dir and gone with it) naming the hub's online key,
targets delegating each rehearsed module to the rehearsal's release key,
and for every stand-in the module's role signed with that release key and
uploaded after the archive, as `release sign --tuf` and `release push` do.
Nodes enrolling afterwards pin that root and ask ngclient before each
download; the hub signs snapshot and timestamp itself.
"""

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Targets

from fogline.artifact import ReleaseKeyError, ReleaseKeyPair, load_public_key
from fogline.tuf import (
    ROOT,
    TARGETS,
    OfflineRepo,
    TufError,
    add_release,
    module_role,
    new_module_role,
    public_key,
    sign_with,
    to_bytes,
)

from ._errors import RehearsalError
from ._hub import OperatorClient


class RehearsalTuf:
    """The TUF repository of one rehearsal's hub (see the module docstring)."""

    def __init__(self, client: OperatorClient, directory: Path, key: ReleaseKeyPair) -> None:
        self._client = client
        self._offline = OfflineRepo(directory)
        self._signer = CryptoSigner(key.private_key, public_key(key.public_key))
        self._roles: dict[str, Metadata[Targets]] = {}

    @property
    def root_version(self) -> int:
        return int(self._offline.root_md().signed.version)

    def init(self, modules: Iterable[str]) -> None:
        """The ceremony: root and targets for `modules`, uploaded to the hub.

        Raises:
            RehearsalError: the hub has no online key to name, or refused an upload.
        """
        answer = self._client.call("GET", "/v1/tuf/online-key")
        try:
            online = public_key(load_public_key(str(answer["public_key"])))
            self._offline.init(1, 1, online)
            for module in sorted(set(modules)):
                self._offline.delegate(module, [self._signer.public_key], 1)
        except (KeyError, TypeError, ReleaseKeyError, TufError) as exc:
            raise RehearsalError(f"the rehearsal's TUF repository: {exc}") from exc
        self._put(ROOT, self._offline.root_file.read_bytes())
        self._put(TARGETS, self._offline.targets_file.read_bytes())

    def sign(self, name: str, version: str, archive: Path) -> None:
        """List `archive` as `name` `version` in the module's role, sign, upload.

        Raises:
            RehearsalError: the hub refused the role.
        """
        data = archive.read_bytes()
        role = self._roles.get(name)
        if role is None:
            role = self._roles[name] = new_module_role()
        # The rehearsal is the only writer of its hub's roles: each upload
        # is the previous one plus this release, one version up.
        add_release(
            role,
            name,
            version,
            len(data),
            hashlib.sha256(data).hexdigest(),
            bump=bool(role.signed.targets),
        )
        sign_with(role, [self._signer])
        self._put(module_role(name), to_bytes(role))

    def _put(self, role: str, body: bytes) -> dict[str, Any]:
        answer: dict[str, Any] = self._client.call(
            "PUT",
            f"/v1/tuf/roles/{role}",
            content=body,
            headers={"content-type": "application/json"},
        )
        return answer
