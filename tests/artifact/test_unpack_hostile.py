"""unpack_release against hostile archives built by hand with tarfile.

Every refusal must leave nothing behind: no destination, no temp directory,
and nothing written outside.
"""

import io
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from fogline.artifact import (
    MAX_PATH_DEPTH,
    ModuleSpecError,
    UnsafeArchiveError,
    check_release,
    find_unpack_leftovers,
    unpack_release,
)

from ._support import Zeros, member, spec_member, write_archive

LIMITS = {"max_bytes": 10 << 20, "max_files": 100}


@pytest.fixture
def work(tmp_path: Path) -> Iterator[Path]:
    """A directory for archive and destination; nothing may appear beside them."""
    (tmp_path / "work").mkdir()
    yield tmp_path / "work"
    assert find_unpack_leftovers(tmp_path / "work") == []


def _refused(work: Path, archive: Path, reason: str, **limits: int) -> UnsafeArchiveError:
    with pytest.raises(UnsafeArchiveError) as caught:
        unpack_release(archive, work / "dest", **{**LIMITS, **limits})
    assert reason in caught.value.reason, caught.value
    assert not (work / "dest").exists()
    assert [p.name for p in work.iterdir() if p != archive] == []
    return caught.value


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../evil", "path traversal"),
        ("a/../../evil", "path traversal"),
        ("/etc/evil", "absolute path"),
        ("./evil", "'.' path component"),
        ("a//evil", "empty or '.'"),
        ("a/" + "x" * 300, "component longer than 255"),
    ],
)
def test_paths_leaving_the_destination_are_refused(work: Path, name: str, reason: str) -> None:
    archive = write_archive(work / "r.tar.zst", [spec_member(), member(name, b"owned")])
    assert _refused(work, archive, reason).member == name
    assert not (work.parent / "evil").exists()


def test_a_symlink_to_an_absolute_path_is_refused(work: Path) -> None:
    archive = write_archive(
        work / "r.tar.zst",
        [
            spec_member(),
            member("passwd", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
            member("passwd", b"root::0:0::/root:/bin/sh\n"),
        ],
    )
    assert _refused(work, archive, "absolute path").member == "passwd"


def test_a_symlink_climbing_out_is_refused(work: Path) -> None:
    archive = write_archive(
        work / "r.tar.zst",
        [spec_member(), member("a/up", type=tarfile.SYMTYPE, linkname="../../..")],
    )
    assert _refused(work, archive, "points outside").member == "a/up"


def test_a_file_written_through_a_symlink_is_refused(work: Path, tmp_path: Path) -> None:
    # The link itself looks harmless (it stays inside); writing through it is not.
    archive = write_archive(
        work / "r.tar.zst",
        [
            spec_member(),
            member("real", type=tarfile.DIRTYPE),
            member("lib", type=tarfile.SYMTYPE, linkname="real"),
            member("lib/payload", b"x"),
        ],
    )
    assert _refused(work, archive, "goes through a symlink").member == "lib/payload"


def test_a_file_written_under_a_file_is_refused(work: Path) -> None:
    archive = write_archive(
        work / "r.tar.zst", [spec_member(), member("f", b"1"), member("f/g", b"2")]
    )
    assert _refused(work, archive, "goes through a file").member == "f/g"


def test_symlinks_that_escape_only_together_are_refused(work: Path) -> None:
    archive = write_archive(
        work / "r.tar.zst",
        [
            spec_member(),
            member("b", type=tarfile.SYMTYPE, linkname="a/.."),  # forward reference
            member("a", type=tarfile.SYMTYPE, linkname="."),
        ],
    )
    assert _refused(work, archive, "resolves outside").member == "b"


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (member("hard", type=tarfile.LNKTYPE, linkname="fogline-module.yaml"), "hard link"),
        (member("tty", type=tarfile.CHRTYPE), "character device"),
        (member("disk", type=tarfile.BLKTYPE), "block device"),
        (member("pipe", type=tarfile.FIFOTYPE), "FIFO"),
        (member("cont", type=tarfile.CONTTYPE), "contiguous file"),
    ],
)
def test_links_devices_and_fifos_are_refused(
    work: Path, entry: tuple[tarfile.TarInfo, None], reason: str
) -> None:
    archive = write_archive(work / "r.tar.zst", [spec_member(), entry])
    assert _refused(work, archive, reason).member == entry[0].name


@pytest.mark.parametrize(
    "entries",
    [
        [member("f", b"1"), member("f", b"2")],
        [member("d", type=tarfile.DIRTYPE), member("d", type=tarfile.DIRTYPE)],
        [member("f", b"1"), member("f", type=tarfile.DIRTYPE)],
        [member("d", type=tarfile.DIRTYPE), member("d", b"1")],
        [member("fogline-module.yaml", b"name: x\n")],
    ],
)
def test_duplicate_entries_are_refused(
    work: Path, entries: list[tuple[tarfile.TarInfo, None]]
) -> None:
    archive = write_archive(work / "r.tar.zst", [spec_member(), *entries])
    _refused(work, archive, "duplicate entry")


def test_too_many_files_are_refused(work: Path) -> None:
    entries = [member(f"f{i:03}", b"") for i in range(200)]
    archive = write_archive(work / "r.tar.zst", [spec_member(), *entries])
    _refused(work, archive, "more than 50 entries", max_files=50)


def test_deep_paths_count_their_implied_directories(work: Path) -> None:
    archive = write_archive(work / "r.tar.zst", [spec_member(), member("a/" * 60 + "f", b"")])
    _refused(work, archive, "more than 50 entries", max_files=50)


@pytest.fixture(scope="module")
def zstd_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 GiB of zeros in one member: a few dozen KiB once compressed."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.tar.zst"
    info, _ = member("zeros.bin")
    info.size = 1 << 30
    write_archive(path, [spec_member(), (info, Zeros(1 << 30))], level=1)
    return path


def test_a_zstd_bomb_stops_at_max_bytes_without_writing_it(work: Path, zstd_bomb: Path) -> None:
    assert zstd_bomb.stat().st_size < 1 << 20
    started = time.monotonic()
    _refused(work, zstd_bomb, "more than 10485760 bytes")
    assert time.monotonic() - started < 2


def test_many_honest_members_stop_at_max_bytes(work: Path) -> None:
    chunks = [member(f"part{i}", bytes(1 << 20)) for i in range(30)]
    archive = write_archive(work / "r.tar.zst", [spec_member(), *chunks])
    _refused(work, archive, "more than 5242880 bytes", max_bytes=5 << 20)


def test_a_huge_pax_header_is_refused_before_it_is_read(work: Path) -> None:
    # A PAX header claiming 1 GiB: tarfile would try to hold it in memory.
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type, pax.size = tarfile.XHDTYPE, 1 << 30
    info, body = spec_member()
    spec = body.getvalue() if body else b""
    raw = (
        info.tobuf(tarfile.USTAR_FORMAT) + spec.ljust(512, b"\0") + pax.tobuf(tarfile.USTAR_FORMAT)
    )
    (work / "r.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(raw + bytes(4096)))
    with pytest.raises(UnsafeArchiveError, match="PAX header of 1073741824 bytes"):
        unpack_release(work / "r.tar.zst", work / "dest", **LIMITS)
    assert not (work / "dest").exists()


def test_a_directory_entry_carrying_data_is_refused(work: Path) -> None:
    info, _ = member("d", type=tarfile.DIRTYPE)
    info.size = 100
    archive = write_archive(work / "r.tar.zst", [spec_member(), (info, None)])
    _refused(work, archive, "dir entry with 100 bytes of data")


def test_gnu_long_names_are_refused(work: Path) -> None:
    archive = write_archive(
        work / "r.tar.zst", [spec_member(), member("n" * 150, b"1")], fmt=tarfile.GNU_FORMAT
    )
    _refused(work, archive, "GNU long-name header")


def test_the_module_file_must_come_first(work: Path) -> None:
    archive = write_archive(work / "r.tar.zst", [member("server.py", b"1"), spec_member()])
    _refused(work, archive, "the first entry must be file fogline-module.yaml")


def test_an_oversized_module_file_is_refused(work: Path) -> None:
    archive = write_archive(work / "r.tar.zst", [spec_member(b"#" * 70_000)])
    _refused(work, archive, "larger than 65536 bytes")


def test_a_corrupt_tar_header_is_refused(work: Path) -> None:
    raw = bytearray(spec_member()[0].tobuf(tarfile.PAX_FORMAT))
    raw[0] ^= 0x20  # the name changes, the checksum does not
    (work / "r.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(bytes(raw)))
    _refused(work, work / "r.tar.zst", "checksum mismatch")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"not zstd at all", "corrupt zstd data"),
        (b"", "truncated archive"),
        (zstandard.ZstdCompressor().compress(b"short"), "truncated archive"),
        (zstandard.ZstdCompressor().compress(bytes(1024)), "the first entry must be"),
    ],
)
def test_garbage_is_refused(work: Path, content: bytes, reason: str) -> None:
    (work / "r.tar.zst").write_bytes(content)
    _refused(work, work / "r.tar.zst", reason)


def test_a_truncated_archive_is_refused(work: Path) -> None:
    archive = write_archive(work / "r.tar.zst", [spec_member(), member("f", b"y" * 100_000)])
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) - 20])
    reason = _refused(work, archive, "").reason
    assert "truncated" in reason or "corrupt zstd data" in reason


def test_a_frame_demanding_a_huge_window_is_refused(work: Path) -> None:
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=27)
    out = io.BytesIO()
    with (
        zstandard.ZstdCompressor(compression_params=params).stream_writer(
            out, closefd=False
        ) as zstd_out,
        tarfile.open(fileobj=zstd_out, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        tar.addfile(*spec_member())
    (work / "r.tar.zst").write_bytes(out.getvalue())
    _refused(work, work / "r.tar.zst", "corrupt zstd data")


def _plain_tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, body in [
            spec_member(),
            member("d", type=tarfile.DIRTYPE),
            member("d/" + "é" * 60, b"data" * 100, mode=0o755),
            member("d/link", type=tarfile.SYMTYPE, linkname="../d"),
        ]:
            tar.addfile(info, body)
    return out.getvalue()


_PLAIN_TAR = _plain_tar()
_HEADERS = [
    offset
    for offset in range(0, len(_PLAIN_TAR), 512)
    if _PLAIN_TAR[offset + 257 : offset + 262] == b"ustar"
]


def _fix_checksums(data: bytearray) -> None:
    """Re-seal edited headers, so edits reach the checks past the checksum."""
    for offset in _HEADERS:
        data[offset + 148 : offset + 156] = b" " * 8
        data[offset + 148 : offset + 156] = b"%06o\0 " % sum(data[offset : offset + 512])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(_PLAIN_TAR) - 1), st.integers(0, 255)),
        min_size=1,
        max_size=6,
    ),
    st.booleans(),
)
def test_mutated_archives_unpack_or_are_refused_cleanly(
    edits: list[tuple[int, int]], reseal: bool
) -> None:
    data = bytearray(_PLAIN_TAR)
    for offset, value in edits:
        data[offset] = value
    if reseal:
        _fix_checksums(data)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) / "work"
        work.mkdir()
        archive = work / "r.tar.zst"
        archive.write_bytes(zstandard.ZstdCompressor(level=1).compress(bytes(data)))
        try:
            unpack_release(archive, work / "dest", **LIMITS)
        except (UnsafeArchiveError, ModuleSpecError):
            assert sorted(p.name for p in work.iterdir()) == ["r.tar.zst"]
        else:
            for path in (work / "dest").rglob("*"):
                resolved = path.resolve()
                assert resolved.is_relative_to((work / "dest").resolve()), path
        assert sorted(p.name for p in Path(scratch).iterdir()) == ["work"]


# -- depth: a path may have at most MAX_PATH_DEPTH components ---------------------------


def test_a_2000_level_path_within_every_other_limit_is_refused(work: Path) -> None:
    # 4,000 bytes of path: under MAX_PATH_BYTES, so only the depth bound stops it.
    deep = "a/" * 1999 + "f"
    archive = write_archive(work / "r.tar.zst", [spec_member(), member(deep, b"x")])
    refused = _refused(work, archive, f"deeper than {MAX_PATH_DEPTH} components", max_files=5000)
    assert refused.member == deep


def test_a_2000_level_chain_of_directory_entries_is_refused(work: Path) -> None:
    # Directory entries one level at a time, as an archive tool would write them.
    dirs = [member("a/" * depth + "a", type=tarfile.DIRTYPE) for depth in range(2000)]
    archive = write_archive(work / "r.tar.zst", [spec_member(), *dirs])
    refused = _refused(work, archive, "deeper than", max_files=5000)
    assert refused.member == "a/" * MAX_PATH_DEPTH + "a"


def test_a_path_at_the_depth_limit_unpacks(work: Path) -> None:
    name = "a/" * (MAX_PATH_DEPTH - 1) + "f"
    archive = write_archive(work / "r.tar.zst", [spec_member(), member(name, b"deep")])
    unpack_release(archive, work / "dest", **LIMITS)
    assert (work / "dest" / name).read_bytes() == b"deep"


def test_check_release_refuses_what_unpack_refuses_and_leaves_nothing(work: Path) -> None:
    archive = write_archive(work / "r.tar.zst", [spec_member(), member("a/" * 100 + "f")])
    scratch = work / "scratch"
    scratch.mkdir()
    with pytest.raises(UnsafeArchiveError, match="deeper than"):
        check_release(archive, scratch, max_bytes=1 << 20, max_files=1000, max_seconds=30)
    assert list(scratch.iterdir()) == []


def test_check_release_counts_bytes_without_writing_them(work: Path, zstd_bomb: Path) -> None:
    scratch = work / "scratch"
    scratch.mkdir()
    with pytest.raises(UnsafeArchiveError, match="more than 10485760 bytes"):
        check_release(zstd_bomb, scratch, max_bytes=10 << 20, max_files=100, max_seconds=30)
    assert list(scratch.iterdir()) == []


def test_check_release_stops_at_its_time_limit(work: Path, zstd_bomb: Path) -> None:
    scratch = work / "scratch"
    scratch.mkdir()
    started = time.monotonic()
    with pytest.raises(UnsafeArchiveError, match="checking took longer than 0 s"):
        check_release(zstd_bomb, scratch, max_bytes=4 << 30, max_files=100, max_seconds=0)
    assert time.monotonic() - started < 5
    assert list(scratch.iterdir()) == []


def test_check_release_accepts_what_unpack_accepts(work: Path) -> None:
    archive = write_archive(
        work / "r.tar.zst",
        [
            spec_member(),
            member("bin", type=tarfile.DIRTYPE),
            member("bin/run", b"#!/bin/sh\n", mode=0o755),
            member("run", type=tarfile.SYMTYPE, linkname="bin/run"),
        ],
    )
    scratch = work / "scratch"
    scratch.mkdir()
    spec = check_release(archive, scratch, max_bytes=1 << 20, max_files=10, max_seconds=30)
    assert spec.name == "demo"
    assert list(scratch.iterdir()) == []
