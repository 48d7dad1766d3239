"""Serving artifact files to thousands of devices at once, with memory that
does not grow with the size of the files or the transports' defaults.

What held the memory (issue #18, measured with benchmarks/bench_downloads.py):
uvicorn awaits the transport's drain only once the transport says it is
above its high-water mark, and uvloop's TLS transport sets that mark at
512 KiB of plaintext, on top of the 64 KiB its TCP transport queues. With
file reads of 256 KiB, a device reading slower than the hub writes (every
cellular device) pinned about 1.2 MB of hub memory until its download
ended. `sendfile` cannot help: the bytes must pass through userspace to be
encrypted.

So the hub keeps a few TLS records per connection in userspace, and the
kernel's socket buffer holds the rest:

* `WRITE_HIGH_WATER_BYTES` on every connection (see _http_guard.py): the
  response waits for the peer once that much is buffered;
* `ArtifactResponse` reads the file in `CHUNK_BYTES` pieces, on the event
  loop when the page cache has them (`preadv` with `RWF_NOWAIT`, a few
  microseconds for the release a wave is downloading), in a worker thread
  only when the disk must be read: small chunks would otherwise cost a
  thread hop each.

What is left, about 130 KB per slow download, is mostly the TCP
transport's 64 KiB queue, which uvloop does not let the TLS layer above it
lower.
"""

import errno
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import anyio
from fastapi.responses import FileResponse

# Plaintext buffered per connection before the response waits for the peer.
WRITE_HIGH_WATER_BYTES: Final = 16 * 1024
# One read and one ASGI message: one TLS record's worth. At 1,000 slow
# downloads 64 KiB chunks held twice the memory per download (270 against
# 133 KB) for the same hub CPU per GB served (2.1 against 2.0 CPU-s).
CHUNK_BYTES: Final = 16 * 1024

# Not every kernel or file system supports RWF_NOWAIT: then every read goes
# to a worker thread, as Starlette's do.
_NOWAIT: Final = getattr(os, "RWF_NOWAIT", 0)
_NOT_CACHED: Final = frozenset({errno.EAGAIN, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS})


class CachedFileReader:
    """An open file read at a position: from the page cache on the event
    loop when it can be, from disk in a worker thread when not."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pos = 0
        self._nowait = bool(_NOWAIT)

    async def seek(self, offset: int) -> int:
        self._pos = offset
        return offset

    async def read(self, size: int) -> bytes:
        """Up to `size` bytes from the position; fewer only at the end of
        the file (Starlette ends the body on a short read)."""
        data = self._read_cached(size) if self._nowait else b""
        if len(data) < size:
            rest = await anyio.to_thread.run_sync(os.pread, self._fd, size - len(data), self._pos)
            self._pos += len(rest)
            data += rest
        return data

    def _read_cached(self, size: int) -> bytes:
        buf = bytearray(size)
        try:
            got = os.preadv(self._fd, [buf], self._pos, _NOWAIT)
        except OSError as exc:
            if exc.errno not in _NOT_CACHED:
                raise
            if exc.errno != errno.EAGAIN:
                self._nowait = False  # this file system never will
            return b""
        self._pos += got
        return bytes(buf) if got == size else bytes(memoryview(buf)[:got])


class ArtifactResponse(FileResponse):
    """Starlette's FileResponse (headers, Range, If-Range, HEAD) with the
    reads above. tests/hub/test_download_memory.py pins the hook it uses."""

    chunk_size = CHUNK_BYTES

    @asynccontextmanager
    async def _open_file(self) -> AsyncIterator[CachedFileReader]:  # type: ignore[override]
        fd = await anyio.to_thread.run_sync(os.open, self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            yield CachedFileReader(fd)
        finally:
            os.close(fd)
