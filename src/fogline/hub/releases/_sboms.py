"""Release SBOMs on the hub: read from the signed archive at push, stored, shown.

The hub reads the SBOM out of the archive whose digest the release signature
covers (after `check_archive`), never from a file sent beside it: what
`fogline release sbom` shows and what the vulnerability gate matches is
what the release key signed. The packages it names go to
`release_components`, indexed by (ecosystem, name), so "which releases hold
package X" is one query.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fogline.artifact import ArtifactError

from .._errors import NotFoundError
from .._schema import ReleaseComponentRow, ReleaseRow, ReleaseSbomRow
from ._errors import ReleaseRejectedError
from ._registry import find_release

if TYPE_CHECKING:
    from fogline.artifact import SbomPackage


@dataclass(frozen=True, slots=True)
class ReleaseSbom:
    """A checked SBOM: its bytes as signed, the file count and the packages it names."""

    text: str
    files: int
    packages: "tuple[SbomPackage, ...]"


def read_sbom(archive: Path) -> ReleaseSbom | None:
    """The SBOM of a checked archive; None when it was built without one.

    Blocking: call it in a worker thread.

    Raises:
        ReleaseRejectedError: bad_archive (422), the SBOM is not a CycloneDX JSON document.
    """
    # The SBOM code (CycloneDX's models, about 4 MB resident) only here: a
    # release push reads an SBOM, a device's request never does.
    from fogline.artifact import SBOM_FILE, read_release_sbom, sbom_packages

    try:
        data = read_release_sbom(archive)
    except ArtifactError as exc:
        raise ReleaseRejectedError("bad_archive", f"{SBOM_FILE}: {exc}") from exc
    if data is None:
        return None
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise ReleaseRejectedError("bad_archive", f"{SBOM_FILE}: not JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("bomFormat") != "CycloneDX":
        raise ReleaseRejectedError(
            "bad_archive", f"{SBOM_FILE}: not a CycloneDX document (bomFormat)"
        )
    components = document.get("components")
    if not isinstance(components, list):
        raise ReleaseRejectedError("bad_archive", f"{SBOM_FILE}: components: must be a list")
    files = sum(1 for c in components if isinstance(c, dict) and c.get("type") == "file")
    return ReleaseSbom(data.decode("utf-8"), files, tuple(sbom_packages(document)))


def attach_sbom(session: Session, release: ReleaseRow, sbom: ReleaseSbom) -> None:
    """Store `sbom` for the new `release` (flushed here to learn its id)."""
    session.flush()
    session.add(
        ReleaseSbomRow(
            release_id=release.id,
            document=sbom.text,
            files=sbom.files,
            components=len(sbom.packages),
        )
    )
    session.add_all(
        ReleaseComponentRow(
            release_id=release.id,
            ecosystem=p.ecosystem,
            name=p.name[:214],
            version=p.version[:128],
            purl=p.purl[:512],
        )
        for p in {p.purl: p for p in sbom.packages}.values()
    )


def release_sbom(session: Session, name: str, version: str) -> dict[str, Any]:
    """The stored SBOM of NAME@VERSION.

    Raises:
        NotFoundError: no such release, or it was pushed without an SBOM.
    """
    release = find_release(session, name, version)
    if release is None:
        raise NotFoundError(f"no release {name[:80]!r} version {version[:80]!r}")
    text = session.scalar(
        select(ReleaseSbomRow.document).where(ReleaseSbomRow.release_id == release.id)
    )
    if text is None:
        raise NotFoundError(
            f"{name}@{version} has no SBOM: it was built before SBOMs; "
            "rebuild and push a new version"
        )
    document: dict[str, Any] = json.loads(text)
    return document
