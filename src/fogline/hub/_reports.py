"""Device reports, recorded in batches: one writer, one transaction per batch.

A fleet of thousands reports every few seconds. A worker-thread hop and a
transaction per report cost more than the report itself, and on SQLite many
writers only queue for the one write lock. Here each request queues its
report and waits; a single writer takes every report queued so far, loads
the devices in one query, authenticates each device against its row (still
there, not revoked, this certificate), records what changed, commits once
and answers all of them. A report is acknowledged only after its
transaction committed.

The writer lingers 20 ms after the first report of a batch
arrives (group commit): a steady 1,000 reports/s otherwise arrive one at a
time, and each would pay a transaction and a thread hop of its own, which
cost a paced fleet several times what the same reports cost in bulk
(bench_report_writer, BENCHMARKS.md). Under heavy load batches grow anyway.

If a batch fails as a whole, its reports are written again one by one, so
one bad report cannot fail the devices that shared its batch.

A report never changes what a device is selected by (its labels are stored
as requested labels, see _device_labels.py), so recording one never
recompiles a desired state: every report takes the same path, prebuilt
statements and no ORM objects.
"""

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

from sqlalchemy import Engine, Table, bindparam, case, select, update
from sqlalchemy.orm import Session, sessionmaker

from fogline._log import event
from fogline.protocol import AppliedState, OutboxReport, Report

from ._clock import utcnow
from ._devices import device_refusal, report_columns
from ._errors import UnavailableError
from ._health import epoch_ms, health_row, insert_samples
from ._reports_pg import update_devices_pg
from ._schema import DesiredStateRow, DeviceRow

log = logging.getLogger("fogline.hub.reports")
MAX_BATCH: Final = 500
# How long a batch waits for company: a tenth of a report's 200 ms latency
# budget, long enough that a hub at 500 reports/s writes ten per transaction
# (5 ms wrote two or three; bench_hub_scale measured 8-22 % more hub CPU
# per report with it, and PostgreSQL pays per transaction on its side too).
LINGER_S: Final = 0.02


@dataclass(slots=True)
class _Pending:
    device_id: str
    cert_serial: str
    report: Report
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class ReportWriter:
    """Queues reports from request handlers and records them in batches."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        max_batch: int = MAX_BATCH,
        linger_s: float = LINGER_S,
        observe_batch: Callable[[int], None] = lambda _size: None,
    ) -> None:
        bind = sessions.kw.get("bind")
        if not isinstance(bind, Engine):
            raise TypeError("ReportWriter needs a session factory bound to an Engine")
        self._engine = bind
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._observe_batch = observe_batch
        self._queue: list[_Pending] = []
        self._wake = asyncio.Event()
        self._running = False

    async def record(self, device_id: str, cert_serial: str, report: Report) -> None:
        """Record one device's report; returns once it is committed.

        Raises:
            ForbiddenError: unknown or revoked device, or a superseded certificate.
            UnavailableError: the hub stopped before the report was written.
        """
        pending = _Pending(device_id, cert_serial, report)
        if not self._running:  # no writer task (an app served without lifespan)
            await self._write_batch([pending])
        else:
            self._queue.append(pending)
            self._wake.set()
        await pending.done

    async def run(self) -> None:
        """The writer: runs for the app's lifetime (its lifespan task group)."""
        self._running = True
        try:
            while True:
                await self._wake.wait()
                if self._linger_s > 0 and len(self._queue) < self._max_batch:
                    await asyncio.sleep(self._linger_s)
                self._wake.clear()
                while self._queue:
                    batch = self._queue[: self._max_batch]
                    del self._queue[: self._max_batch]
                    await self._write_batch(batch)
        finally:
            self._running = False
            stopping = UnavailableError("the hub is stopping; report again later")
            for pending in self._queue:
                if not pending.done.done():
                    pending.done.set_exception(stopping)
            self._queue.clear()

    async def _write_batch(self, batch: list[_Pending]) -> None:
        self._observe_batch(len(batch))
        try:
            outcomes = await asyncio.to_thread(self._write, batch)
        except Exception as exc:  # the batch as a whole failed: one by one
            event(log, "reports.batch_failed", logging.WARNING, size=len(batch), error=repr(exc))
            outcomes = [await asyncio.to_thread(self._write_one, p) for p in batch]
        for pending, outcome in zip(batch, outcomes, strict=True):
            if pending.done.done():
                continue  # the request went away (client disconnect, shutdown)
            if outcome is None:
                pending.done.set_result(None)
            else:
                pending.done.set_exception(outcome)

    def _write_one(self, pending: _Pending) -> BaseException | None:
        try:
            return self._write([pending])[0]
        except Exception as exc:
            return exc

    def _write(self, batch: Sequence[_Pending]) -> list[BaseException | None]:
        """In a worker thread: one transaction for the whole batch.

        Reports refresh facts, requested labels, module statuses, last_seen
        and the applied revision, and add health samples: one executemany per table, without loading
        ORM objects. A device twice in one batch (a retried report) is
        written in order, its last report last.
        """
        now = utcnow()
        outcomes: list[BaseException | None] = []
        device_updates: list[dict[str, Any]] = []
        applied_updates: list[dict[str, Any]] = []
        health_rows: list[dict[str, Any]] = []
        now_ms = epoch_ms(now)
        # Core on a bare connection: prebuilt statements skip the ORM's
        # per-call compile and bulk-update bookkeeping, and a Session's
        # transaction bookkeeping, which cost more than the writes. Nothing
        # here needs a Session: reports are not audited (the audit trail
        # appends on a Session's commit) and change no label (the label
        # index follows ORM flushes).
        with self._engine.begin() as connection:
            ids = {p.device_id for p in batch}
            current = {row.id: row for row in connection.execute(_CURRENT_ROWS, {"ids": ids})}
            # The applied columns as the batch leaves them so far, per device:
            # a retried report in the same batch compares against its first.
            applied_now: dict[str, tuple[str | None, bool, str | None]] = {}
            # The outbox's lost count and when it last rose, as the batch leaves them.
            lost_now: dict[str, tuple[int, Any]] = {}
            for pending in batch:
                row = current.get(pending.device_id)
                refusal = device_refusal(row, pending.cert_serial)
                outcomes.append(refusal)
                if row is None or refusal is not None:
                    continue
                report = pending.report
                lost, lost_at = lost_now.get(row.id, (row.outbox_lost, row.outbox_lost_at))
                if report.outbox is not None:
                    total = outbox_lost(report.outbox)
                    # A count lower than the last is a node whose outbox was
                    # reset: the new count is the baseline, not a drop.
                    lost, lost_at = total, now if total > lost else lost_at
                    lost_now[row.id] = (lost, lost_at)
                device_updates.append(
                    {
                        "b_id": row.id,
                        "b_cert": pending.cert_serial,
                        "outbox_lost": lost,
                        "outbox_lost_at": lost_at,
                        **report_columns(report, now),
                    }
                )
                if report.health is not None:
                    health_rows.append(health_row(row.id, report.health, now_ms, report.outbox))
                applied = report.applied
                if applied is not None and row.has_desired is not None:
                    before = applied_now.get(
                        row.id, (row.applied_revision, row.applied_ok, row.applied_error)
                    )
                    values = (applied.revision, applied.ok, applied.error)
                    if values != before:
                        applied_updates.append(_applied_columns(row.id, applied))
                        applied_now[row.id] = values
            if connection.dialect.name == "postgresql":
                update_devices_pg(connection, device_updates)
            elif device_updates:
                connection.execute(_UPDATE_DEVICE, device_updates)
            if applied_updates:
                connection.execute(_UPDATE_APPLIED, applied_updates)
            insert_samples(connection, health_rows)
        return outcomes


_DEVICES: Final = cast(Table, DeviceRow.__table__)
_DESIRED: Final = cast(Table, DesiredStateRow.__table__)

# What a batch needs to know of its devices, in one query. Built once:
# building a statement costs more than SQLite running it.
_CURRENT_ROWS: Final = (
    select(
        _DEVICES.c.id,
        _DEVICES.c.cert_serial,
        _DEVICES.c.prev_cert_serial,
        _DEVICES.c.revoked_at,
        _DEVICES.c.outbox_lost,
        _DEVICES.c.outbox_lost_at,
        _DESIRED.c.device_id.label("has_desired"),
        _DESIRED.c.applied_revision,
        _DESIRED.c.applied_ok,
        _DESIRED.c.applied_error,
    )
    .outerjoin(_DESIRED, _DESIRED.c.device_id == _DEVICES.c.id)
    .where(_DEVICES.c.id.in_(bindparam("ids", expanding=True)))
)
# executemany: each parameter set names its row (b_id, b_device_id) and the
# columns it sets.
#
# A report with the device's current certificate ends the one it renewed
# from (prev_cert_serial), decided by the UPDATE on the row as it is then,
# not as the batch read it: a renewal committed in between (a new
# certificate, the presented one kept as prev) must not be undone, or the
# node, which may never have received the new certificate, is locked out.
_UPDATE_DEVICE: Final = (
    update(_DEVICES)
    .where(_DEVICES.c.id == bindparam("b_id"))
    .values(
        prev_cert_serial=case(
            (_DEVICES.c.cert_serial == bindparam("b_cert"), None),
            else_=_DEVICES.c.prev_cert_serial,
        )
    )
)
_UPDATE_APPLIED: Final = update(_DESIRED).where(_DESIRED.c.device_id == bindparam("b_device_id"))


def outbox_lost(outbox: OutboxReport) -> int:
    """Records a node's outbox gave up without delivering them: over its
    disk quota, past their TTL, or refused by the hub (dead letters)."""
    return outbox.dropped_quota + outbox.expired + outbox.dead_lettered


def _applied_columns(device_id: str, applied: AppliedState) -> dict[str, Any]:
    return {
        "b_device_id": device_id,
        "applied_revision": applied.revision,
        "applied_ok": applied.ok,
        "applied_error": applied.error,
    }
