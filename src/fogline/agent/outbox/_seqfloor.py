"""A high-water mark of issued seqs, kept in a small file beside the database.

The hub stores each (device, stream, seq) once. If the database were lost
(corrupt and moved aside, or deleted) and a new one restarted at seq 1, the
hub would silently discard every new record as a duplicate of an old one.
So before any seq is committed, a reservation covering it is made durable in
this file, a block at a time (one extra fsync per SEQ_BLOCK seqs); a new
database starts above the reservation.
"""

import logging
from pathlib import Path
from typing import Final

from fogline._durable import write_atomic

SEQ_BLOCK: Final = 100_000
# SQLite integers are signed 64-bit; leave head-room for the reservation block.
MAX_SEQ: Final = 2**62
_MAX_FILE_BYTES: Final = 64
_log = logging.getLogger("fogline.agent.outbox")


class SeqReservation:
    """The durable upper bound of every seq this outbox has committed."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._reserved = self._load()

    @property
    def reserved(self) -> int | None:
        """The highest reserved seq, or None if the file is missing or unreadable."""
        return self._reserved

    def ensure(self, last_seq: int) -> None:
        """Make the reservation cover `last_seq` before it is committed.

        Raises:
            OSError: the file could not be written; the caller must not commit.
        """
        if self._reserved is not None and last_seq <= self._reserved:
            return
        target = last_seq + SEQ_BLOCK
        write_atomic(self._path, f"{target}\n".encode(), mode=0o600, make_parents=False)
        self._reserved = target

    def _load(self) -> int | None:
        try:
            with self._path.open("rb") as f:
                raw = f.read(_MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            _log.warning("%s: cannot read the seq reservation: %s", self._path, exc)
            return None
        text = raw.decode("ascii", "replace").strip()
        if len(raw) > _MAX_FILE_BYTES or not text.isdigit() or int(text) > MAX_SEQ:
            _log.warning("%s: ignoring a malformed seq reservation", self._path)
            return None
        return int(text)
