"""The TUF side of `fogline release sign --tuf` and `release push`.

`sign --tuf` writes ARCHIVE.tuf.json: the module's role (`module-<name>`)
as the hub has it, plus this release (`<name>/<version>`, its length and
sha256), one version up, signed by the release key. When the file already
lists this release with these bytes, the key's signature is added instead:
that is how a second release key co-signs under a threshold of two.
`push` uploads the file after the archive.
"""

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata, Targets

from fogline._durable import write_atomic
from fogline._errors import FoglineError
from fogline.artifact import SignatureEnvelope
from fogline.tuf import (
    TufError,
    add_release,
    load_signer,
    module_role,
    new_module_role,
    parse,
    sign_with,
    target_path,
    to_bytes,
)

from ._client import HubClient
from ._tuf import hub_metadata


def tuf_role_path(archive: Path) -> Path:
    """Where `release sign --tuf` leaves the module's role: ARCHIVE.tuf.json."""
    return archive.with_name(archive.name + ".tuf.json")


def sign_module_role(
    archive: Path,
    envelope: SignatureEnvelope,
    size: int,
    key: Path,
    connect: Callable[[], AbstractContextManager[HubClient]],
) -> Path:
    """Sign the module's TUF role with this release in it; returns its path.

    Raises:
        FoglineError: the key cannot sign, or the hub's role is unreadable.
    """
    role = module_role(envelope.name)
    path = tuf_role_path(archive)
    sha256 = envelope.digest.removeprefix("sha256:")
    try:
        signer = load_signer(key)
        md = _cosign_candidate(path, role, envelope, size, sha256)
        if md is None:
            with connect() as client:
                current = hub_metadata(client, role)
            if current is None:
                md = new_module_role()
            else:
                md = parse(role, json.dumps(current).encode(), Targets)
            add_release(
                md, envelope.name, str(envelope.version), size, sha256, bump=current is not None
            )
        sign_with(md, [signer])
    except TufError as exc:
        raise FoglineError(str(exc)) from None
    write_atomic(path, to_bytes(md), mode=0o644)
    return path


def _cosign_candidate(
    path: Path, role: str, envelope: SignatureEnvelope, size: int, sha256: str
) -> Metadata[Any] | None:
    """The role in `path` if it already lists exactly this release, else None."""
    if not path.exists():
        return None
    md = parse(role, path.read_bytes(), Targets)
    listed = md.signed.targets.get(target_path(envelope.name, str(envelope.version)))
    if listed is None or listed.length != size or listed.hashes.get("sha256") != sha256:
        return None
    return md


def push_module_role(client: HubClient, archive: Path, name: str) -> dict[str, Any]:
    """Upload ARCHIVE.tuf.json as the module's role; the hub's answer."""
    answer: dict[str, Any] = client.request(
        "PUT",
        f"/v1/tuf/roles/{module_role(name)}",
        content=tuf_role_path(archive).read_bytes(),
        headers={"content-type": "application/json"},
    )
    return answer
