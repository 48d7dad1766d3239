"""Device health as time series: raw samples, rollups and retention.

Each report with health adds one raw row (`step_s` 0) to `health_samples`,
in the report writer's batch (one executemany per batch: the hot path pays
building a dict per report, see bench_report_writer). A background pass
rolls raw rows up into buckets of `rollup_step_s` (5 minutes by default) per
device, in one INSERT ... SELECT ... GROUP BY, and deletes raw rows older
than `raw_retention_s` (24 h) and rollups older than `rollup_retention_s`
(30 days). Times are integer milliseconds since the epoch (`at_ms`), so the
bucket of a row is `at_ms - at_ms % step` on SQLite and PostgreSQL alike.

A rollup keeps per bucket: the mean of CPU, load, memory used and the
agent's RSS; the least memory available and disk free (the worst moment);
the most of temperature, disk size, the network counters and the data
plane's error and drop counters (they only grow). Per-module figures,
the series modules expose included, are kept in raw rows only.

A rollup pass resumes after the last bucket it wrote, so a hub that was down
rolls up what it missed; it waits `_GRACE_MS` past a bucket's end for
batches still committing. With PostgreSQL replicas, one pass at a time runs
(an advisory lock), like telemetry retention.
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from sqlalchemy import (
    BigInteger,
    Engine,
    Float,
    Table,
    and_,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
)
from sqlalchemy import (
    cast as sql_cast,
)
from sqlalchemy.orm import Session

from fogline.protocol import NodeHealth, OutboxReport

from ._schema import HealthSampleRow

RAW_STEP_S: Final = 0
# Bucket ends a pass waits for, at most: a batch stamped just before a
# bucket's end may still be committing when the bucket closes.
_GRACE_MS: Final = 10_000
# At most this many buckets per pass: a hub down for a month catches up over
# a few passes, not in one transaction holding the write lock.
_MAX_BUCKETS_PER_PASS: Final = 288
_ROLLUP_LOCK_ID: Final = 0x466F_675F_6865_616C  # "Fog_heal"

_SAMPLES: Final = cast(Table, HealthSampleRow.__table__)
_INSERT: Final = insert(_SAMPLES)

# The node columns and how a rollup aggregates each.
_MEAN: Final = ("cpu_percent", "load1", "load5", "load15", "mem_used_bytes", "agent_rss_bytes")
_LEAST: Final = ("mem_available_bytes", "disk_free_bytes")
_MOST: Final = (
    "temperature_c",
    "disk_total_bytes",
    "net_rx_bytes",
    "net_tx_bytes",
    "pipeline_errors",
    "pipeline_dropped",
)
SERIES_COLUMNS: Final = (*_MEAN, *_LEAST, *_MOST)


@dataclass(frozen=True, slots=True)
class HealthRetention:
    """How health series are kept; `hub serve --health-*` sets them."""

    raw_retention_s: float = 86400.0
    rollup_step_s: float = 300.0
    rollup_retention_s: float = 30 * 86400.0

    @property
    def pass_interval_s(self) -> float:
        """How often rollup and retention run: a minute, or faster for short steps."""
        return min(60.0, max(self.rollup_step_s / 2, 0.5))


def epoch_ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


def health_row(
    device_id: str, health: NodeHealth, at_ms: int, outbox: OutboxReport | None = None
) -> dict[str, Any]:
    """The raw row of one report's health (a parameter set of `insert_samples`)."""
    row: dict[str, Any] = {name: getattr(health, name) for name in SERIES_COLUMNS}
    row["outbox_dropped"] = outbox.dropped_quota + outbox.expired if outbox is not None else None
    row["device_id"] = device_id
    row["step_s"] = RAW_STEP_S
    row["at_ms"] = at_ms
    row["modules"] = (
        {name: m.model_dump(mode="json", exclude_none=True) for name, m in health.modules.items()}
        if health.modules
        else None
    )
    return row


def insert_samples(connection: Any, rows: Sequence[dict[str, Any]]) -> None:
    """One executemany on the report writer's connection, in its transaction."""
    if rows:
        connection.execute(_INSERT, rows)


def _aggregate(name: str) -> Any:
    column = _SAMPLES.c[name]
    if name in _MEAN:
        mean = func.avg(column)
        return mean if isinstance(column.type, Float) else sql_cast(func.round(mean), BigInteger)
    return func.min(column) if name in _LEAST else func.max(column)


def roll_up(engine: Engine, now_ms: int, retention: HealthRetention) -> tuple[int, int]:
    """One pass: roll up the closed buckets not yet rolled up, then delete what
    is past retention. Returns (rollup rows written, rows deleted).

    `now_ms` is the hub's clock (injected by tests)."""
    step_ms = max(int(retention.rollup_step_s * 1000), 1000)
    step_s = step_ms // 1000
    with Session(engine) as session, session.begin():
        if engine.dialect.name == "postgresql":
            got = session.scalar(
                text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": _ROLLUP_LOCK_ID}
            )
            if not got:
                return 0, 0  # another replica is on it
        connection = session.connection()
        # Resume after the last bucket written, skipping buckets without raw
        # rows (a hub or fleet that was down), so a gap never stalls a pass.
        last = connection.scalar(
            select(func.max(_SAMPLES.c.at_ms)).where(_SAMPLES.c.step_s == step_s)
        )
        first_query = select(func.min(_SAMPLES.c.at_ms)).where(_SAMPLES.c.step_s == RAW_STEP_S)
        if last is not None:
            first_query = first_query.where(_SAMPLES.c.at_ms >= int(last) + step_ms)
        first = connection.scalar(first_query)
        start = None if first is None else int(first) - int(first) % step_ms
        written = 0
        if start is not None:
            closed = now_ms - min(_GRACE_MS, step_ms)
            end = min(closed - closed % step_ms, start + _MAX_BUCKETS_PER_PASS * step_ms)
            if end > start:
                written = _insert_rollups(connection, step_s, step_ms, start, end)
        raw_cutoff = now_ms - int(retention.raw_retention_s * 1000)
        rollup_cutoff = now_ms - int(retention.rollup_retention_s * 1000)
        deleted = connection.execute(
            delete(_SAMPLES).where(
                or_(
                    and_(_SAMPLES.c.step_s == RAW_STEP_S, _SAMPLES.c.at_ms < raw_cutoff),
                    and_(_SAMPLES.c.step_s != RAW_STEP_S, _SAMPLES.c.at_ms < rollup_cutoff),
                )
            )
        )
        return written, int(getattr(deleted, "rowcount", 0) or 0)


def _insert_rollups(connection: Any, step_s: int, step_ms: int, start: int, end: int) -> int:
    at = _SAMPLES.c.at_ms
    bucket = (at - at % step_ms).label("bucket")
    query = (
        select(
            _SAMPLES.c.device_id,
            literal(step_s).label("step_s"),
            bucket,
            *(_aggregate(name).label(name) for name in SERIES_COLUMNS),
        )
        .where(_SAMPLES.c.step_s == RAW_STEP_S, at >= start, at < end)
        .group_by(_SAMPLES.c.device_id, bucket)
    )
    connection.execute(
        insert(_SAMPLES).from_select(["device_id", "step_s", "at_ms", *SERIES_COLUMNS], query)
    )
    # Counted, not the insert's rowcount: SQLite gives -1 for INSERT ... SELECT.
    return int(
        connection.scalar(
            select(func.count()).where(_SAMPLES.c.step_s == step_s, at >= start, at < end)
        )
        or 0
    )


# -- reading a series -------------------------------------------------------------------

# A series answers at most this many points: a chart is a few hundred pixels
# wide, and the bound keeps an answer small whatever window is asked for.
MAX_POINTS: Final = 10_000
# Without `step`, a window is cut into about this many buckets.
DEFAULT_POINTS: Final = 500
# Rows read for one answer, at most (raw samples of a device reporting every
# second for a day are 86,400).
_MAX_ROWS: Final = 100_000
_INTEGERS: Final = frozenset(name for name in SERIES_COLUMNS if name.endswith("_bytes"))


@dataclass(frozen=True, slots=True)
class SeriesQuery:
    """What `GET /v1/devices/{ref}/health` asks for, checked (see `series_query`)."""

    since_ms: int
    step_s: float  # 0: raw samples as they came
    from_rollups: bool


def series_query(
    window_s: float, step_s: float | None, now_ms: int, retention: HealthRetention
) -> SeriesQuery:
    """Which rows answer a window, and in what step.

    Raw samples while the window fits in their retention and the step is
    finer than a rollup's, else rollups. Without a step: about
    DEFAULT_POINTS points, never finer than what is stored.

    Raises:
        ValueError: the step would give more than MAX_POINTS points (the
            caller names the `step` field).
    """
    if step_s is not None and step_s > 0 and window_s / step_s > MAX_POINTS:
        raise ValueError(
            f"a window of {window_s:.0f}s in steps of {step_s:g}s is more than "
            f"{MAX_POINTS} points; take a longer step"
        )
    from_rollups = (
        window_s > retention.raw_retention_s
        if step_s is None
        else step_s >= retention.rollup_step_s
    )
    if step_s is None:
        finest = retention.rollup_step_s if from_rollups else 0.0
        step_s = max(finest, window_s / DEFAULT_POINTS)
        step_s = 0.0 if step_s < 1 else float(int(step_s))
    return SeriesQuery(now_ms - int(window_s * 1000), step_s, from_rollups)


def read_series(
    session: Session, device_id: str, query: SeriesQuery, retention: HealthRetention
) -> list[dict[str, Any]]:
    """The points of one device's series, oldest first (HealthPoint fields)."""
    step = max(int(retention.rollup_step_s * 1000), 1000) // 1000 if query.from_rollups else 0
    columns = [_SAMPLES.c.at_ms, *(_SAMPLES.c[name] for name in SERIES_COLUMNS)]
    if not query.from_rollups:
        columns.append(_SAMPLES.c.modules)
    rows = session.execute(
        select(*columns)
        .where(
            _SAMPLES.c.device_id == device_id,
            _SAMPLES.c.step_s == step,
            _SAMPLES.c.at_ms >= query.since_ms,
        )
        .order_by(_SAMPLES.c.at_ms)
        .limit(_MAX_ROWS)
    ).all()
    points = [dict(row._mapping) for row in rows]
    bucket_ms = int(query.step_s * 1000)
    if bucket_ms > step * 1000 and bucket_ms > 0:
        points = _bucketed(points, bucket_ms)
    for point in points:
        point["at"] = dt.datetime.fromtimestamp(point.pop("at_ms") / 1000, dt.UTC)
    return points


def _bucketed(points: list[dict[str, Any]], bucket_ms: int) -> list[dict[str, Any]]:
    """Points grouped into buckets of `bucket_ms`, each figure aggregated as a
    rollup aggregates it (mean, least or most); modules left out."""
    buckets: dict[int, list[dict[str, Any]]] = {}
    for point in points:
        at = point["at_ms"]
        buckets.setdefault(at - at % bucket_ms, []).append(point)
    merged = []
    for start, members in buckets.items():
        out: dict[str, Any] = {"at_ms": start}
        for name in SERIES_COLUMNS:
            values = [m[name] for m in members if m[name] is not None]
            if not values:
                out[name] = None
            elif name in _MEAN:
                mean = sum(values) / len(values)
                out[name] = round(mean) if name in _INTEGERS else round(mean, 2)
            else:
                out[name] = min(values) if name in _LEAST else max(values)
        merged.append(out)
    return merged
