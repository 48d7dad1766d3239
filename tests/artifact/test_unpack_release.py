"""unpack_release on good archives: faithful, limits exact, dest must be new."""

import os
import shutil
import tarfile
from pathlib import Path

import pytest
import zstandard

from fogline.artifact import (
    UnsafeArchiveError,
    build_release,
    find_unpack_leftovers,
    load_module_spec,
    read_module_spec_from_archive,
    unpack_release,
)

from ._support import make_module, member, spec_member, tree, write_archive

LIMITS = {"max_bytes": 10 << 20, "max_files": 100}


def test_unpack_reproduces_the_module_directory(tmp_path: Path) -> None:
    src = make_module(tmp_path / "mod")
    archive = build_release(src, tmp_path / "r.tar.zst").path
    spec = unpack_release(archive, tmp_path / "installed", **LIMITS)
    assert spec == load_module_spec(src / "fogline-module.yaml")
    installed = tmp_path / "installed"
    (src / "bin" / "run.sh").chmod(0o755)  # what the archive records for 0700
    # The build adds the release's SBOM; the node keeps it with what it runs.
    shutil.copyfile(tmp_path / "r.tar.zst.cdx.json", src / "fogline-sbom.cdx.json")
    assert tree(installed) == tree(src)
    assert tree(installed)["bin/run.sh"].startswith("0o755 ")
    assert tree(installed)["server.py"].startswith("0o644 ")
    assert tree(installed)["current"] == "-> bin/run.sh"
    assert (installed / "current").read_text().startswith("#!/bin/sh")
    assert (installed.stat().st_mode & 0o777) == 0o755
    assert find_unpack_leftovers(tmp_path) == []


def test_read_module_spec_reads_only_the_first_entry(tmp_path: Path) -> None:
    src = make_module(tmp_path / "mod")
    (src / "weights.bin").write_bytes(os.urandom(1 << 20))  # incompressible: many zstd blocks
    archive = build_release(src, tmp_path / "r.tar.zst").path
    assert read_module_spec_from_archive(archive).name == "thermo-filter"
    # Cut the archive in half: the spec, in the first zstd block, still reads.
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    assert read_module_spec_from_archive(archive).name == "thermo-filter"
    with pytest.raises(UnsafeArchiveError):
        unpack_release(archive, tmp_path / "installed", **LIMITS)


def test_the_destination_must_not_exist(tmp_path: Path) -> None:
    archive = build_release(make_module(tmp_path / "mod"), tmp_path / "r.tar.zst").path
    (tmp_path / "installed").mkdir()
    (tmp_path / "installed" / "keep").write_text("mine")
    with pytest.raises(FileExistsError):
        unpack_release(archive, tmp_path / "installed", **LIMITS)
    assert (tmp_path / "installed" / "keep").read_text() == "mine"


def test_limits_are_exact(tmp_path: Path) -> None:
    spec = spec_member()
    spec_size = spec[0].size
    archive = write_archive(
        tmp_path / "r.tar.zst",
        [spec, member("a/b", b"x" * 1000), member("c", b"y" * 24)],
    )
    # entries: module file, a (implied), a/b, c
    unpack_release(archive, tmp_path / "ok", max_bytes=spec_size + 1024, max_files=4)
    with pytest.raises(UnsafeArchiveError, match="more than 3 entries"):
        unpack_release(archive, tmp_path / "few", max_bytes=spec_size + 1024, max_files=3)
    with pytest.raises(UnsafeArchiveError, match="more than"):
        unpack_release(archive, tmp_path / "small", max_bytes=spec_size + 1023, max_files=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok", "r.tar.zst"]


def test_archives_written_by_tarfile_are_read(tmp_path: Path) -> None:
    long_name = "deep/" + "n" * 150 + "/é-file"
    archive = write_archive(
        tmp_path / "r.tar.zst",
        [
            spec_member(),
            member("deep", type=tarfile.DIRTYPE, mode=0o700),
            member(long_name, b"long", mode=0o755),
            member("deep/link", type=tarfile.SYMTYPE, linkname="n" * 150 + "/é-file"),
        ],
    )
    unpack_release(archive, tmp_path / "out", **LIMITS)
    assert (tmp_path / "out" / long_name).read_bytes() == b"long"
    assert (tmp_path / "out" / "deep" / "link").read_bytes() == b"long"
    assert ((tmp_path / "out" / "deep").stat().st_mode & 0o777) == 0o755


def test_an_explicit_directory_after_its_implied_creation_is_fine(tmp_path: Path) -> None:
    archive = write_archive(
        tmp_path / "r.tar.zst",
        [spec_member(), member("d/f", b"1"), member("d", type=tarfile.DIRTYPE)],
    )
    unpack_release(archive, tmp_path / "out", **LIMITS)
    assert (tmp_path / "out" / "d" / "f").read_bytes() == b"1"


def test_an_archive_split_into_several_zstd_frames_is_read(tmp_path: Path) -> None:
    # Multi-threaded zstd tools emit one stream as several frames.
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, body in [spec_member(), member("f", b"z" * 5000)]:
            tar.addfile(info, body)
    data = plain.read_bytes()
    compressor = zstandard.ZstdCompressor()
    halves = compressor.compress(data[:1024]) + compressor.compress(data[1024:])
    (tmp_path / "r.tar.zst").write_bytes(halves)
    unpack_release(tmp_path / "r.tar.zst", tmp_path / "out", **LIMITS)
    assert (tmp_path / "out" / "f").read_bytes() == b"z" * 5000
