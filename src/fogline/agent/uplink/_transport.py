"""The port to the hub (`HubTransport`) and its in-memory fake."""

import asyncio
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from fogline.agent.outbox import OutboxRecord
from fogline.hubclient import HubUnreachableError
from fogline.protocol import (
    BatchFormatError,
    BatchRecord,
    decode_batch,
    encode_batch,
    encode_columns,
)

from ._errors import BatchRejectedError

_FAKE_MAX_DECOMPRESSED: Final = 64 * 1024 * 1024


class HubTransport(Protocol):
    """Delivers batches of outbox records to the hub."""

    async def send_batch(self, records: Sequence[OutboxRecord]) -> None:
        """Return only once the hub has stored every record of the batch.

        Raises:
            HubUnreachableError: network, TLS, timeout, 408, 429, 5xx; the hub may
                have stored some or all of the batch; sending it again is safe.
            HubRefusedError: 401/403; the data is fine, the identity is not: the
                batch waits for it to be fixed.
            BatchRejectedError: the hub refuses the data (4xx); resending the
                same batch would fail the same way.
        """
        ...


class MemoryHubTransport:
    """A fake hub in memory: stores each (stream, seq) once, like the real one.

    Every batch goes through the wire format as the real transport sends it
    to a current hub (`encode_columns`/`decode_columns`, or format 1 for a
    batch format 2 cannot carry), so tests also exercise the codecs. Failure switches:

    * `fail_next(n)`: the next n calls raise HubUnreachableError, storing nothing.
    * `fail_next(n, after_apply=True)`: the next n calls store the batch and
      then raise: the acknowledgement was lost, the classic source of
      duplicates.
    * `go_down()` / `come_up()`: every call fails until told otherwise.
    * `reject_if`: a batch holding a record that matches is refused with
      BatchRejectedError(422), storing nothing (as a hub validating a whole
      request does).
    """

    def __init__(self) -> None:
        self.stored: dict[tuple[str, int], BatchRecord] = {}
        self.duplicates = 0  # records received again after being stored
        self.calls = 0
        self.applied: list[tuple[int, ...]] = []  # seqs of each batch stored, in order
        self.reject_if: Callable[[BatchRecord], bool] | None = None
        self._failures_left = 0
        self._fail_after_apply = False
        self._is_down = False

    @property
    def is_down(self) -> bool:
        return self._is_down

    def fail_next(self, calls: int, *, after_apply: bool = False) -> None:
        """Make the next `calls` sends fail (after storing, if `after_apply`)."""
        if calls < 0:
            raise ValueError(f"calls: expected >= 0, got {calls}")
        self._failures_left, self._fail_after_apply = calls, after_apply

    def go_down(self) -> None:
        """Fail every send until `come_up`."""
        self._is_down = True

    def come_up(self) -> None:
        self._is_down = False

    async def send_batch(self, records: Sequence[OutboxRecord]) -> None:
        """Store the batch once per (stream, seq); see the class docstring for failures."""
        self.calls += 1
        await asyncio.sleep(0)  # a real send yields to the event loop
        if self._is_down:
            raise HubUnreachableError("hub unreachable: MemoryHubTransport is down")
        if self._failures_left and not self._fail_after_apply:
            self._failures_left -= 1
            raise HubUnreachableError("hub unreachable: injected failure")
        from fogline.protocol import decode_columns  # the hub's side: not in an agent's memory

        try:
            decoded = decode_columns(
                encode_columns(records), max_decompressed=_FAKE_MAX_DECOMPRESSED
            )
        except BatchFormatError:
            decoded = decode_batch(encode_batch(records), max_decompressed=_FAKE_MAX_DECOMPRESSED)
        if self.reject_if is not None:
            bad = [r.seq for r in decoded if self.reject_if(r)]
            if bad:
                raise BatchRejectedError(422, f"invalid records: seq {bad}")
        for record in decoded:
            key = (record.stream, record.seq)
            if key in self.stored:
                self.duplicates += 1
            else:
                self.stored[key] = record
        self.applied.append(tuple(r.seq for r in decoded))
        if self._failures_left:
            self._failures_left -= 1
            raise HubUnreachableError("hub unreachable: injected failure after storing the batch")
