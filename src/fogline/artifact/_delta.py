"""Binary deltas between two release archives (zstd's patch-from mode).

Deltas between the compressed archives themselves are useless: one changed
byte early in a tar changes every compressed block after it. So a delta
works on the decompressed tars:

    delta   = zstd(tar_B) with tar_A as a raw-content dictionary
              (long-distance matching, a window covering tar_A and tar_B)
    rebuild = decompress(delta, dict=tar_A) -> tar_B
              -> recompress with the archive format's fixed zstd settings

The last step reproduces B's archive bytes exactly only when B was built by
`build_release` (fixed level, streamed frame, checksum, no content size)
with a compatible zstd. `make_delta` therefore rebuilds B itself and refuses
(returns None) when the bytes differ; the node checks the digest of what it
rebuilt anyway and falls back to the full archive on any difference. The
digest and the signature cover the archive bytes as pushed, never the tar.

Everything is bounded: tars larger than `max_tar_bytes` are not delta'd
(the node holds base and target tars in memory while rebuilding), and the
decoder refuses a frame that asks for more than that many bytes of output.
"""

import hashlib
import io
from collections.abc import Callable
from typing import IO, Final, cast

import zstandard

from ._errors import UnsafeArchiveError
from ._members import ZSTD_LEVEL, ZSTD_MAX_WINDOW

# A 5 MB release is a tar of 10-30 MB; 256 MiB is far beyond any release a
# node would rather patch than download (and what it holds in memory).
DEFAULT_MAX_TAR_BYTES: Final = 256 << 20
# The delta's own compression. Measured on a 5 MB release (a 20 MB tar,
# benchmarks/bench_delta.py): a one-line change is 12.5 KB at 12 in 0.4 s
# of CPU, 191 KB at 13-14 (the optimal parsers index the base worse) in
# 8-11 s, 1.9 KB at 19 in 15 s; levels below 11 barely use the base.
# 12 keeps the hub's work per delta well under a second.
DELTA_LEVEL: Final = 12
_CHUNK: Final = 1 << 20


def archive_tar(archive: bytes, *, max_tar_bytes: int = DEFAULT_MAX_TAR_BYTES) -> bytes:
    """The decompressed tar of a release archive, at most `max_tar_bytes`.

    Raises:
        UnsafeArchiveError: not a zstd stream, or its tar is larger than the limit.
    """
    decompressor = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    return _read_bounded(
        lambda: decompressor.stream_reader(io.BytesIO(archive), read_across_frames=True),
        max_tar_bytes,
        "archive",
    )


def compress_archive(tar: bytes) -> bytes:
    """`tar` compressed exactly as `build_release` compresses an archive."""
    out = io.BytesIO()
    # The same settings as _build._write_archive, streamed the same way: a
    # one-shot compress() knows the size and would pick other parameters.
    compressor = zstandard.ZstdCompressor(
        level=ZSTD_LEVEL, write_checksum=True, write_content_size=False, threads=0
    )
    with compressor.stream_writer(cast(IO[bytes], out), closefd=False) as writer:
        for start in range(0, len(tar), _CHUNK):
            writer.write(tar[start : start + _CHUNK])
    return out.getvalue()


def make_delta(
    base_archive: bytes,
    target_archive: bytes,
    *,
    max_tar_bytes: int = DEFAULT_MAX_TAR_BYTES,
    level: int = DELTA_LEVEL,
) -> bytes | None:
    """The delta that rebuilds `target_archive` from `base_archive`, or None
    when the target cannot be rebuilt byte for byte from its tar (not made
    by `build_release`, or by a zstd that compresses differently).

    Raises:
        UnsafeArchiveError: either archive is not zstd or too large to delta.
    """
    base_tar = archive_tar(base_archive, max_tar_bytes=max_tar_bytes)
    target_tar = archive_tar(target_archive, max_tar_bytes=max_tar_bytes)
    if compress_archive(target_tar) != target_archive:
        return None
    params = zstandard.ZstdCompressionParameters.from_level(
        level,
        window_log=_window_log(len(base_tar) + len(target_tar)),
        enable_ldm=True,
        write_checksum=True,
        write_content_size=True,
        threads=0,
    )
    compressor = zstandard.ZstdCompressor(
        compression_params=params, dict_data=_dictionary(base_tar)
    )
    return compressor.compress(target_tar)


def apply_delta(
    base_archive: bytes,
    delta: bytes,
    *,
    max_tar_bytes: int = DEFAULT_MAX_TAR_BYTES,
) -> bytes:
    """Rebuild the target archive from `base_archive` and `delta`.

    The caller must check the result's digest: a delta for another base, or
    made by a different zstd, yields other bytes (or fails here).

    Raises:
        UnsafeArchiveError: the base or the delta is not zstd, is corrupt
            (checksum), asks for a window or output beyond `max_tar_bytes`.
    """
    base_tar = archive_tar(base_archive, max_tar_bytes=max_tar_bytes)
    decompressor = zstandard.ZstdDecompressor(
        dict_data=_dictionary(base_tar),
        max_window_size=1 << _window_log(len(base_tar) + max_tar_bytes),
    )
    target_tar = _read_bounded(
        lambda: decompressor.stream_reader(io.BytesIO(delta)), max_tar_bytes, "delta"
    )
    return compress_archive(target_tar)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _dictionary(tar: bytes) -> zstandard.ZstdCompressionDict:
    # Raw content: the whole base tar is the prefix the delta refers into.
    return zstandard.ZstdCompressionDict(tar, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def _window_log(size: int) -> int:
    # zstd's window must cover base and target for matches reaching back into
    # the base; 2**31 is zstd's own maximum on 64-bit builds.
    log = max(size - 1, 1).bit_length()
    return min(max(log, 20), 31)


def _read_bounded(
    open_reader: Callable[[], zstandard.ZstdDecompressionReader], limit: int, what: str
) -> bytes:
    out = bytearray()
    try:
        with open_reader() as reader:
            while True:
                chunk = reader.read(_CHUNK)
                if not chunk:
                    break
                out += chunk
                if len(out) > limit:
                    raise UnsafeArchiveError(what, f"decompresses to more than {limit} bytes")
    except zstandard.ZstdError as exc:
        raise UnsafeArchiveError(what, f"not a valid zstd stream: {exc}") from None
    return bytes(out)
