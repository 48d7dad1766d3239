"""The artifact store: release archives by content digest, written atomically."""

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from starlette.concurrency import run_in_threadpool

from fogline._durable import fsync_dir, make_dirs, write_all
from fogline.artifact import DIGEST_RE, delete_tree, find_unpack_leftovers

from ._errors import ReleaseRejectedError

# Upload chunks are gathered into blocks this big before a worker thread
# hashes and writes them: few thread hops, bounded memory per upload.
_WRITE_BLOCK: Final = 1024 * 1024
# A partial upload nobody wrote to for this long was left by a crash.
STALE_UPLOAD_S: Final = 3600.0


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
        # Durably: the store's root may be made here, at the first upload.
        make_dirs(self.root)
        make_dirs(tmp, mode=0o700)
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=tmp)
        path, hasher, size = Path(name), hashlib.sha256(), 0
        block = bytearray()

        def write(data: bytes) -> None:
            hasher.update(data)
            write_all(fd, data)

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
        # The rename, and any directory made for it, must survive a power cut
        # before the database row that points here is committed.
        make_dirs(target.parent)
        os.chmod(staged.path, 0o644)
        os.replace(staged.path, target)
        fsync_dir(target.parent)
        return target

    def remove(self, digest: str) -> bool:
        """Delete a stored archive (its row is gone); False when it was not there."""
        try:
            self.path_for(digest).unlink()
        except FileNotFoundError:
            return False
        return True

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
