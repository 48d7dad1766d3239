"""Fixtures shared by the hub's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.receivers import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1 that answers 200 and keeps what it got."""
    started = Receiver("ok")
    try:
        yield started
    finally:
        started.close()
