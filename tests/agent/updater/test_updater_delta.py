"""Delta updates in the updater: the target rebuilt from the kept archive of
the installed release, checked like a download; anything wrong falls back to
the full archive and the update ends as if no delta had been offered."""

import asyncio
from dataclasses import replace

import pytest

from fogline.agent.updater import MemoryTargetTrust, TrustedTarget, UpdateLimits
from fogline.artifact._delta import make_delta

from ._support import NAME, MakeNode, Node, Release


def _delta(base: Release, target: Release) -> bytes:
    delta = make_delta(base.blob, target.blob)
    assert delta is not None
    return delta


def _bases(node: Node) -> list[str]:
    directory = node.root / "bases" / NAME
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def _on_v1(make_node: MakeNode, releases: dict[str, Release], **kwargs: object) -> Node:
    v1, v2, v3 = releases["1.0.0"], releases["2.0.0"], releases["3.0.0"]
    node = make_node(v1, v2, v3, **kwargs)
    assert asyncio.run(node.updater().ensure(v1.target)).ok
    node.source.fetches.clear()
    return node


def test_an_update_is_rebuilt_from_a_delta_and_the_archive_is_never_fetched(
    make_node: MakeNode, releases: dict[str, Release]
) -> None:
    v1, v2 = releases["1.0.0"], releases["2.0.0"]
    node = _on_v1(make_node, releases)
    assert _bases(node) == [f"{v1.target.digest}.tar.zst"]
    node.source.deltas[(v2.target.digest, v1.target.digest)] = _delta(v1, v2)
    result = asyncio.run(node.updater().ensure(v2.target))
    assert result.ok, result
    assert node.source.delta_fetches == [(v2.target.digest, v1.target.digest)]
    assert node.source.fetches == []
    assert node.activator.running == {NAME: "2.0.0"}
    assert _bases(node) == [f"{v2.target.digest}.tar.zst"]  # one per module
    assert any(r.detail == "rebuilt from a delta" for r in node.reports)
    assert list((node.root / "downloads").iterdir()) == []


@pytest.mark.parametrize("kind", ["garbage", "another release's"])
def test_a_corrupt_or_foreign_delta_falls_back_to_the_full_archive(
    make_node: MakeNode, releases: dict[str, Release], kind: str
) -> None:
    v1, v2, v3 = releases["1.0.0"], releases["2.0.0"], releases["3.0.0"]
    node = _on_v1(make_node, releases)
    delta = b"\x28\xb5\x2f\xfd" + b"\x00" * 64 if kind == "garbage" else _delta(v1, v3)
    node.source.deltas[(v2.target.digest, v1.target.digest)] = delta
    result = asyncio.run(node.updater().ensure(v2.target))
    assert result.ok, result
    assert node.source.fetches == [(v2.target.digest, 0)]
    assert node.activator.running == {NAME: "2.0.0"}
    assert list((node.root / "downloads").iterdir()) == []


def test_a_rotted_base_is_not_used_and_is_deleted(
    make_node: MakeNode, releases: dict[str, Release]
) -> None:
    v1, v2 = releases["1.0.0"], releases["2.0.0"]
    node = _on_v1(make_node, releases)
    node.source.deltas[(v2.target.digest, v1.target.digest)] = _delta(v1, v2)
    base = node.root / "bases" / NAME / f"{v1.target.digest}.tar.zst"
    data = bytearray(base.read_bytes())
    data[len(data) // 2] ^= 0xFF
    base.write_bytes(bytes(data))
    result = asyncio.run(node.updater().ensure(v2.target))
    assert result.ok, result
    assert node.source.fetches == [(v2.target.digest, 0)]
    assert _bases(node) == [f"{v2.target.digest}.tar.zst"]


def test_with_deltas_off_no_base_is_kept_and_none_is_asked(
    make_node: MakeNode, releases: dict[str, Release]
) -> None:
    v1, v2 = releases["1.0.0"], releases["2.0.0"]
    node = _on_v1(make_node, releases, limits=UpdateLimits(delta_updates=False))
    node.source.deltas[(v2.target.digest, v1.target.digest)] = _delta(v1, v2)
    assert _bases(node) == []
    assert asyncio.run(node.updater().ensure(v2.target)).ok
    assert node.source.delta_fetches == []
    assert node.source.fetches == [(v2.target.digest, 0)]


def test_with_tuf_the_rebuilt_archive_is_checked_against_the_signed_target(
    make_node: MakeNode, releases: dict[str, Release]
) -> None:
    v1, v2 = releases["1.0.0"], releases["2.0.0"]
    node = _on_v1(make_node, releases)
    node.tuf = MemoryTargetTrust(
        {(NAME, r.version): TrustedTarget(len(r.blob), r.target.digest) for r in (v1, v2)}
    )
    node.source.deltas[(v2.target.digest, v1.target.digest)] = _delta(v1, v2)
    assert asyncio.run(node.updater().ensure(v2.target)).ok
    assert node.source.fetches == []
    # TUF vouching for other bytes refuses the rebuilt release like a download.
    v3 = releases["3.0.0"]
    node.tuf = MemoryTargetTrust(
        {(NAME, v3.version): TrustedTarget(len(v3.blob), v1.target.digest)}
    )
    node.source.deltas[(v3.target.digest, v2.target.digest)] = _delta(v2, v3)
    result = asyncio.run(node.updater().ensure(replace(v3.target)))
    assert not result.ok
    assert node.activator.running == {NAME: "2.0.0"}
