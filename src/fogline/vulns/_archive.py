"""Read OSV advisories from a zip (as OSV publishes, one per ecosystem) or a directory.

Everything is bounded before it is read: the archive's size, its member
count, each member's size (from its header, then again while reading), and
the total bytes decompressed, so a zip bomb costs a refusal, not the hub's
memory. Members are read, never extracted: names cannot steer a write.
The first malformed file refuses the whole import, naming the file and the
reason, so a database is never half imported.
"""

import io
import os
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ._errors import VulnArchiveError
from ._limits import MAX_IMPORT_BYTES
from ._osv import MAX_ADVISORY_BYTES, Advisory, parse_advisory

MAX_ADVISORIES: Final = 1_000_000
MAX_UNCOMPRESSED_BYTES: Final = 8 << 30


@dataclass(frozen=True, slots=True)
class ParsedAdvisory:
    """One advisory, the file it came from and its bytes as published."""

    source: str
    advisory: Advisory
    raw: bytes


def read_osv_zip(data: bytes, label: str) -> Iterator[ParsedAdvisory]:
    """Every advisory in the OSV zip `data` (named `label` in errors).

    Raises:
        VulnArchiveError: too large, not a zip, too many members, a member
            over MAX_ADVISORY_BYTES or not a `.json` file.
        AdvisoryError: a member is not a valid OSV advisory.
    """
    if len(data) > MAX_IMPORT_BYTES:
        raise VulnArchiveError(label, f"larger than {MAX_IMPORT_BYTES} bytes")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise VulnArchiveError(label, f"not a zip file: {exc}") from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_ADVISORIES:
            raise VulnArchiveError(label, f"more than {MAX_ADVISORIES} files")
        total = 0
        for info in members:
            if info.is_dir():
                continue
            where = f"{label}:{info.filename[:200]}"
            if not info.filename.endswith(".json"):
                raise VulnArchiveError(where, "not an OSV advisory (a .json file)")
            if info.file_size > MAX_ADVISORY_BYTES:
                raise VulnArchiveError(where, f"larger than {MAX_ADVISORY_BYTES} bytes")
            total += info.file_size
            if total > MAX_UNCOMPRESSED_BYTES:
                raise VulnArchiveError(label, f"over {MAX_UNCOMPRESSED_BYTES} bytes uncompressed")
            try:
                with archive.open(info) as fh:
                    # The header's size may lie: read one byte more than it allows.
                    raw = fh.read(MAX_ADVISORY_BYTES + 1)
            except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
                raise VulnArchiveError(where, f"cannot be read: {exc}") from None
            yield ParsedAdvisory(where, parse_advisory(raw, where), raw)


def zip_directory(directory: Path) -> bytes:
    """The `*.json` files directly in `directory`, as one zip (what the hub imports).

    Raises:
        VulnArchiveError: no advisory in it, or more than MAX_ADVISORIES, or too large.
        OSError: it cannot be read.
    """
    names = sorted(
        entry.name
        for entry in os.scandir(directory)
        if entry.name.endswith(".json") and stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode)
    )
    if not names:
        raise VulnArchiveError(os.fspath(directory), "no OSV advisory (*.json) in it")
    if len(names) > MAX_ADVISORIES:
        raise VulnArchiveError(os.fspath(directory), f"more than {MAX_ADVISORIES} files")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            path = Path(directory) / name
            if path.stat().st_size > MAX_ADVISORY_BYTES:
                raise VulnArchiveError(os.fspath(path), f"larger than {MAX_ADVISORY_BYTES} bytes")
            archive.writestr(name, path.read_bytes())
            if out.tell() > MAX_IMPORT_BYTES:
                raise VulnArchiveError(os.fspath(directory), f"over {MAX_IMPORT_BYTES} bytes")
    return out.getvalue()
