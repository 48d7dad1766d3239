"""Content digests: `sha256:<64 hex>`, the address of a release everywhere."""

import hashlib
import re
from pathlib import Path
from typing import Final

DIGEST_RE: Final = re.compile(r"sha256:[0-9a-f]{64}", re.ASCII)
_CHUNK: Final = 1 << 20


def sha256_file(path: Path) -> str:
    """Return `sha256:<hex>` of a file, read in chunks (releases can be GiBs).

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def is_digest(text: object) -> bool:
    """True for a well-formed `sha256:<64 lowercase hex>` string."""
    return isinstance(text, str) and DIGEST_RE.fullmatch(text) is not None
