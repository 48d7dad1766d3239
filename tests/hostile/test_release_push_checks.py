"""The hub checks the whole archive at push, with the node's own unpacker checks.

Each archive here is validly signed by a trusted key and has a valid first
entry (`fogline-module.yaml`): the hub used to read only that entry and
store the rest unseen. Now `fogline release push` is refused, 422
bad_archive, naming the member and the reason, and nothing is stored.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from fogline.artifact import DEFAULT_MAX_INSTALL_BYTES, DEFAULT_MAX_INSTALL_FILES, MAX_PATH_DEPTH
from tests.artifact._support import member, spec_member, write_archive
from tests.support.processes import HubProcess, start_hub

SPEC = b"name: hostile\nversion: {version}\nkind: config\narchitectures: [any]\n"


@pytest.fixture(scope="module")
def pusher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HubProcess, Path]]:
    """A hub trusting one release key, and that key's private half."""
    work = tmp_path_factory.mktemp("push")
    hub = start_hub(work / "hub")
    try:
        created = hub.cli("keys", "create", "ci", "--dir", str(work / "keys"))
        hub.cli("apply", "-f", "-", input_text=created.stdout)
        yield hub, work / "keys" / "ci.key"
    finally:
        hub.stop()


def _spec(version: str) -> tuple[tarfile.TarInfo, object]:
    return spec_member(SPEC.replace(b"{version}", version.encode()))


def _push(pusher: tuple[HubProcess, Path], archive: Path) -> str:
    """Sign `archive` with the trusted key, push it; return the one-line refusal."""
    hub, key = pusher
    hub.cli("release", "sign", str(archive), "--key", str(key))
    result = hub.cli("release", "push", str(archive), check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "bad_archive" in lines[0] or "422" in lines[0], lines[0]
    with hub.client() as client:
        assert client.get("/v1/releases").json() == []  # nothing stored
    return lines[0]


@pytest.mark.parametrize(
    ("case", "members", "reason"),
    [
        ("deep", [member("a/" * 1999 + "f", b"x")], f"deeper than {MAX_PATH_DEPTH} components"),
        ("absolute", [member("/etc/cron.d/evil", b"* * * * * root sh\n")], "absolute path"),
        ("dotdot", [member("../../evil", b"owned")], "path traversal"),
        (
            "symlink-out",
            [member("up", type=tarfile.SYMTYPE, linkname="../../../etc")],
            "points outside the release",
        ),
        (
            "symlink-chain",
            [
                member("b", type=tarfile.SYMTYPE, linkname="a/.."),
                member("a", type=tarfile.SYMTYPE, linkname="."),
            ],
            "symlink resolves outside the release",
        ),
        (
            "through-link",
            [
                member("lib", type=tarfile.SYMTYPE, linkname="."),
                member("lib/payload", b"x"),
            ],
            "goes through a symlink",
        ),
        ("device", [member("tty", type=tarfile.CHRTYPE)], "character device"),
        ("hardlink", [member("h", type=tarfile.LNKTYPE, linkname="/etc/shadow")], "hard link"),
    ],
)
def test_a_hostile_member_after_a_valid_module_file_is_refused_at_push(
    pusher: tuple[HubProcess, Path], tmp_path: Path, case: str, members: list, reason: str
) -> None:
    archive = write_archive(tmp_path / f"{case}.tar.zst", [_spec("1.0.0"), *members])
    refusal = _push(pusher, archive)
    assert reason in refusal


def test_too_many_entries_are_refused_at_push(
    pusher: tuple[HubProcess, Path], tmp_path: Path
) -> None:
    many = [member(f"d{i // 1000}/f{i}") for i in range(DEFAULT_MAX_INSTALL_FILES + 1)]
    archive = write_archive(tmp_path / "many.tar.zst", [_spec("1.0.1"), *many], level=1)
    refusal = _push(pusher, archive)
    assert f"more than {DEFAULT_MAX_INSTALL_FILES} entries" in refusal


def _zstd_bomb(path: Path, unpacked: int) -> Path:
    """One member of `unpacked` zero bytes, as concatenated zstd frames: the
    same 64 MiB frame repeated, so the bomb costs nothing to make."""
    info, body = _spec("1.0.2")
    head = info.tobuf(tarfile.PAX_FORMAT) + body.getvalue().ljust(512, b"\0")  # type: ignore[attr-defined]
    zeros = tarfile.TarInfo("zeros.bin")
    zeros.size = unpacked
    head += zeros.tobuf(tarfile.PAX_FORMAT)
    compressor = zstandard.ZstdCompressor(level=1)
    chunk = 64 << 20
    frame = compressor.compress(bytes(chunk))
    full, rest = divmod(unpacked, chunk)
    with path.open("wb") as out:
        out.write(compressor.compress(head))
        for _ in range(full):
            out.write(frame)
        tail = bytes(rest) + bytes(-unpacked % 512) + bytes(1024)
        out.write(compressor.compress(tail))
    return path


def test_a_zstd_bomb_within_the_upload_limit_is_refused_at_push(
    pusher: tuple[HubProcess, Path], tmp_path: Path
) -> None:
    archive = _zstd_bomb(tmp_path / "bomb.tar.zst", DEFAULT_MAX_INSTALL_BYTES + 1)
    assert archive.stat().st_size < 1 << 20  # far under MAX_RELEASE_BYTES
    refusal = _push(pusher, archive)
    assert f"unpacking would write more than {DEFAULT_MAX_INSTALL_BYTES} bytes" in refusal
    assert "zeros.bin" in refusal
    hub, _ = pusher
    assert [p.name for p in (hub.data_dir / "artifacts" / "tmp").iterdir()] == []


def test_an_honest_release_still_pushes(pusher: tuple[HubProcess, Path], tmp_path: Path) -> None:
    hub, key = pusher
    archive = write_archive(
        tmp_path / "ok.tar.zst",
        [
            _spec("2.0.0"),
            member("bin", type=tarfile.DIRTYPE),
            member("bin/run", b"#!/bin/sh\n", mode=0o755),
            member("run", type=tarfile.SYMTYPE, linkname="bin/run"),
            member("a/" * (MAX_PATH_DEPTH - 1) + "deepest", b"ok"),
        ],
    )
    hub.cli("release", "sign", str(archive), "--key", str(key))
    hub.cli("release", "push", str(archive))
    with hub.client() as client:
        assert [r["version"] for r in client.get("/v1/releases").json()] == ["2.0.0"]
