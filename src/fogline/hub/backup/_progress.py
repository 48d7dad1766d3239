"""How backup and restore show their progress: a port, and a fake that shows nothing."""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import BinaryIO, Protocol

Advance = Callable[[int], None]


class Progress(Protocol):
    """Long work in steps; each step advances by bytes (or spins when its total is None)."""

    def step(self, description: str, total_bytes: int | None) -> AbstractContextManager[Advance]:
        """A step of the work; the context yields the function that advances it."""
        ...


class NoProgress:
    """Shows nothing: for library callers and tests."""

    @contextmanager
    def step(self, description: str, total_bytes: int | None) -> Iterator[Advance]:
        del description, total_bytes
        yield _ignore


def _ignore(_amount: int) -> None:
    pass


class CountingReader:
    """A binary file whose reads advance a progress step by the bytes read."""

    def __init__(self, source: BinaryIO, advance: Advance) -> None:
        self._source, self._advance = source, advance

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._advance(len(data))
        return data
