"""The served hub's heap after start-up: frozen out of the garbage collector
(hub/_serve.py settle_heap), which every full collection otherwise walked."""

import gc
from collections.abc import Iterator

import pytest

from fogline.hub._serve import GC_YOUNG_THRESHOLD, settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_settle_heap_freezes_startup_objects_and_raises_the_young_threshold() -> None:
    gc.unfreeze()
    kept = [[index] for index in range(1000)]  # containers alive "at start-up"
    _young, *older = gc.get_threshold()
    settle_heap()
    assert gc.get_freeze_count() >= len(kept)
    walked = {id(obj) for obj in gc.get_objects()}  # what a full collection visits
    assert not any(id(item) in walked for item in kept)
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *older)


@pytest.mark.usefixtures("restored_gc")
def test_objects_made_after_settling_are_still_collected() -> None:
    settle_heap()

    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector frees it

    Node()
    assert gc.collect() >= 1
