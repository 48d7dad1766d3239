"""Deltas between release archives: rebuild B's exact bytes from A, or refuse."""

import hashlib
import os
from pathlib import Path

import pytest
import zstandard

from fogline.artifact import UnsafeArchiveError, build_release
from fogline.artifact._delta import apply_delta, compress_archive, make_delta


def _module(root: Path, version: str, line: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "fogline-module.yaml").write_text(
        f"name: app\nversion: {version}\ncommand: [python3, main.py]\n"
        "architectures: [any]\nhealth: {uptime: 1s}\n"
    )
    body = "".join(f"value_{i} = {i * 7919 % 1000}\n" for i in range(20_000))
    (root / "main.py").write_text(body + line)
    (root / "model.bin").write_bytes(bytes(range(256)) * 2000)
    return root


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    tmp = tmp_path_factory.mktemp("delta")
    a = build_release(_module(tmp / "a", "1.0.0", "x = 1\n"), tmp / "a.tar.zst")
    b = build_release(_module(tmp / "b", "1.0.1", "x = 2\n"), tmp / "b.tar.zst")
    return a.path.read_bytes(), b.path.read_bytes()


def test_a_delta_rebuilds_the_target_archive_byte_for_byte(pair: tuple[bytes, bytes]) -> None:
    a, b = pair
    delta = make_delta(a, b)
    assert delta is not None
    assert len(delta) < len(b) // 20
    rebuilt = apply_delta(a, delta)
    assert hashlib.sha256(rebuilt).digest() == hashlib.sha256(b).digest()


def test_a_target_not_rebuildable_from_its_tar_gets_no_delta(pair: tuple[bytes, bytes]) -> None:
    a, b = pair
    tar = zstandard.ZstdDecompressor().stream_reader(b).read()
    other = zstandard.ZstdCompressor(level=3).compress(tar)  # not build_release's settings
    assert compress_archive(tar) == b
    assert make_delta(a, other) is None


def test_a_delta_against_another_base_does_not_rebuild_the_target(
    pair: tuple[bytes, bytes],
) -> None:
    a, b = pair
    delta = make_delta(a, b)
    assert delta is not None
    other_base = compress_archive(os.urandom(len(a)))
    with pytest.raises(UnsafeArchiveError, match="not a valid zstd"):
        apply_delta(other_base, delta)  # the frame's checksum catches the wrong base


def test_garbage_and_oversized_deltas_are_refused(pair: tuple[bytes, bytes]) -> None:
    a, b = pair
    with pytest.raises(UnsafeArchiveError, match="not a valid zstd"):
        apply_delta(a, b"\x28\xb5\x2f\xfd" + os.urandom(200))
    delta = make_delta(a, b)
    assert delta is not None
    with pytest.raises(UnsafeArchiveError, match="more than"):
        apply_delta(a, delta, max_tar_bytes=len(a) * 4 + 10)
