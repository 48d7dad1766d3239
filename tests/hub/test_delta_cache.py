"""The hub's delta cache: no delta when it would not save much, a bounded
cache, and a request that stops waiting while the work finishes."""

import asyncio
import os
from pathlib import Path

from fogline.artifact import build_release
from fogline.hub.releases import ArtifactStore, DeltaCache, DeltaSettings, remove_deltas
from fogline.hub.releases._artifacts import StagedArtifact


def _store(tmp_path: Path, *payloads: bytes) -> tuple[ArtifactStore, list[str]]:
    store = ArtifactStore(tmp_path / "artifacts")
    digests = []
    for index, payload in enumerate(payloads):
        src = tmp_path / f"src{index}"
        src.mkdir()
        (src / "fogline-module.yaml").write_text(
            f"name: app\nversion: 1.0.{index}\nkind: config\narchitectures: [any]\n"
        )
        (src / "data.bin").write_bytes(payload)
        info = build_release(src, tmp_path / f"a{index}.tar.zst")
        store.commit(StagedArtifact(info.path, info.digest, info.size))
        digests.append(info.digest)
    return store, digests


def test_a_delta_not_much_smaller_than_the_archive_is_not_served(tmp_path: Path) -> None:
    store, (a, b) = _store(tmp_path, os.urandom(200_000), os.urandom(200_000))
    cache = DeltaCache(DeltaSettings())
    assert asyncio.run(cache.get(store, b, a)) is None
    marker = (
        store.root / "deltas" / b.removeprefix("sha256:") / (a.removeprefix("sha256:") + ".none")
    )
    assert marker.is_file()  # remembered: not made again
    assert not list((store.root / "deltas").glob("*/*.zst"))


def test_the_cache_keeps_its_total_under_the_cap(tmp_path: Path) -> None:
    common = os.urandom(300_000)
    store, (a, b, c) = _store(tmp_path, common + b"1", common + b"2", common + b"3")
    cache = DeltaCache(DeltaSettings(max_cache_bytes=1))  # room for the newest only

    async def ask() -> None:
        first = await cache.get(store, b, a)
        assert first is not None and first.is_file()
        os.utime(first, (1, 1))  # older than the next one
        second = await cache.get(store, c, a)
        assert second is not None and second.is_file()
        assert not first.exists()

    asyncio.run(ask())
    assert remove_deltas(store, a) == 1  # the delta to c from a
    assert not list((store.root / "deltas").glob("*/*"))


def test_a_request_stops_waiting_and_the_delta_is_there_for_the_next(tmp_path: Path) -> None:
    common = os.urandom(300_000)
    store, (a, b) = _store(tmp_path, common + b"1", common + b"2")
    cache = DeltaCache(DeltaSettings(wait_s=0))

    async def ask() -> None:
        assert await cache.get(store, b, a) is None  # not ready at once: 404, fetch in full
        for _ in range(200):  # bounded: the work takes well under a second
            if not cache._pending:
                break
            await asyncio.sleep(0.05)
        cache.settings = DeltaSettings()
        assert await cache.get(store, b, a) is not None

    asyncio.run(ask())
