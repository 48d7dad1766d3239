"""ArtifactResponse's file reads (hub/_artifact_response.py): from the page
cache on the event loop, from disk in a thread, never a short read before
the end of the file; and the Starlette hook they rely on."""

from __future__ import annotations

import errno
import inspect
import os

import anyio
import pytest
from starlette.responses import FileResponse

from fogline.hub import _artifact_response
from fogline.hub._artifact_response import ArtifactResponse, CachedFileReader

DATA = bytes(range(256)) * 1000  # 256,000 bytes


@pytest.fixture
def fd(tmp_path):
    path = tmp_path / "artifact"
    path.write_bytes(DATA)
    opened = os.open(path, os.O_RDONLY)
    yield opened
    os.close(opened)


async def _read_all(reader: CachedFileReader, start: int, size: int) -> bytes:
    await reader.seek(start)
    out = b""
    while chunk := await reader.read(size):
        assert len(chunk) == size or start + len(out) + len(chunk) == len(DATA)
        out += chunk
    return out


def test_reads_the_file_from_any_position(fd):
    assert anyio.run(_read_all, CachedFileReader(fd), 0, 16384) == DATA
    assert anyio.run(_read_all, CachedFileReader(fd), 1000, 7000) == DATA[1000:]


def test_a_page_cache_miss_reads_the_rest_in_a_thread(fd, monkeypatch):
    calls = []

    def partly_cached(fd_, buffers, offset, flags):
        calls.append(offset)
        if len(calls) % 2:  # half a chunk is cached, then nothing is
            got = os.pread(fd_, 100, offset)
            buffers[0][: len(got)] = got
            return len(got)
        raise BlockingIOError(errno.EAGAIN, "not cached")

    monkeypatch.setattr(_artifact_response.os, "preadv", partly_cached)
    assert anyio.run(_read_all, CachedFileReader(fd), 0, 16384) == DATA
    assert len(calls) > 2


def test_a_file_system_without_nowait_reads_go_to_threads(fd, monkeypatch):
    calls = []

    def unsupported(fd_, buffers, offset, flags):
        calls.append(offset)
        raise OSError(errno.EOPNOTSUPP, "not supported")

    monkeypatch.setattr(_artifact_response.os, "preadv", unsupported)
    assert anyio.run(_read_all, CachedFileReader(fd), 0, 16384) == DATA
    assert len(calls) == 1  # asked once, then never again


def test_starlette_still_reads_files_through_the_hook_we_replace():
    # If an upgrade stops using `_open_file`, artifacts would be read 64 KiB
    # at a time in threads again: correct, but the memory bound is gone.
    for handler in ("_handle_simple", "_handle_single_range", "_handle_multiple_ranges"):
        assert "self._open_file()" in inspect.getsource(getattr(FileResponse, handler)), handler
    assert ArtifactResponse.chunk_size == _artifact_response.CHUNK_BYTES
