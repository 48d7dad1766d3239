"""Releases are built once per test module: signing and packing are the slow part."""

from collections.abc import Callable
from pathlib import Path

import pytest

from fogline.artifact import ReleaseKeyPair, generate_release_key

from ._support import MemoryActivator, Node, Release, make_release, serve


@pytest.fixture(scope="module")
def key() -> ReleaseKeyPair:
    return generate_release_key()


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory, key: ReleaseKeyPair) -> dict[str, Release]:
    work = tmp_path_factory.mktemp("releases")
    return {v: make_release(work, v, key) for v in ("1.0.0", "2.0.0", "3.0.0", "4.0.0")}


@pytest.fixture
def node(tmp_path: Path, releases: dict[str, Release], key: ReleaseKeyPair) -> Node:
    """A node that can fetch every release; 3.0.0 never becomes healthy."""
    return Node(
        root=tmp_path / "node",
        source=serve(*releases.values()),
        activator=MemoryActivator(health={"3.0.0": False}),
        key=key,
    )


@pytest.fixture
def make_node(tmp_path: Path, key: ReleaseKeyPair) -> Callable[..., Node]:
    def make(*served: Release, **kwargs: object) -> Node:
        return Node(
            root=tmp_path / "node",
            source=serve(*served),
            activator=kwargs.pop("activator", MemoryActivator()),  # type: ignore[arg-type]
            key=key,
            **kwargs,  # type: ignore[arg-type]
        )

    return make
