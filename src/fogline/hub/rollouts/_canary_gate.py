"""The database side of canary analysis: the cohorts, their series, the verdict.

At the end of a wave's bake (the health gate would pass it), the wave's
succeeded devices are the canaries; the rollout's devices still pending
(served the old revision) are the control cohort. The control is narrowed
to the canaries' strata and hardware (`fogline.dev/arch`) when that leaves
`minSamples` devices, else to their strata, else it is every pending
device. Each cohort is capped at `MAX_COHORT` devices (a seeded sample), so
a wave of 10,000 reads a bounded number of rows. A canary's series starts
when it was first seen healthy on the new revision; the control's at the
earliest of those.
"""

import datetime as dt
import random
from collections.abc import Mapping, Sequence
from typing import Any, Final, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from .._device_labels import effective_labels
from .._health import RAW_STEP_S, epoch_ms
from .._schema import DeviceRow, HealthSampleRow, RolloutDeviceRow
from ._analysis import AnalysisResult, Sample, analyse
from ._analysis_spec import AnalysisSpec
from ._canaries import stratum_of
from ._machine import DeviceState

MAX_COHORT: Final = 500
# Rows read per cohort, at most: 500 devices reporting every 10 s for 10 min.
_MAX_ROWS: Final = 200_000
_IN_CHUNK: Final = 500
_ARCH: Final = "fogline.dev/arch"
_SAMPLES: Final = cast(Table, HealthSampleRow.__table__)


def read_samples(session: Session, since_ms: Mapping[str, int]) -> dict[str, list[Sample]]:
    """Each device's raw health samples from its own start time, oldest first."""
    found: dict[str, list[Sample]] = {device_id: [] for device_id in since_ms}
    ids = sorted(since_ms)
    earliest = min(since_ms.values(), default=0)
    rows_left = _MAX_ROWS
    columns = (
        _SAMPLES.c.device_id,
        _SAMPLES.c.at_ms,
        _SAMPLES.c.cpu_percent,
        _SAMPLES.c.mem_used_bytes,
        _SAMPLES.c.outbox_dropped,
        _SAMPLES.c.pipeline_errors,
        _SAMPLES.c.pipeline_dropped,
        _SAMPLES.c.modules,
    )
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        query = (
            select(*columns)
            .where(
                _SAMPLES.c.device_id.in_(chunk),
                _SAMPLES.c.step_s == RAW_STEP_S,
                _SAMPLES.c.at_ms >= earliest,
            )
            .order_by(_SAMPLES.c.device_id, _SAMPLES.c.at_ms)
            .limit(rows_left)
        )
        for row in session.execute(query):
            rows_left -= 1
            if row.at_ms < since_ms[row.device_id]:
                continue
            found[row.device_id].append(
                Sample(
                    at_s=row.at_ms / 1000,
                    cpu_percent=row.cpu_percent,
                    mem_used_bytes=row.mem_used_bytes,
                    outbox_dropped=row.outbox_dropped,
                    pipeline_errors=row.pipeline_errors,
                    pipeline_dropped=row.pipeline_dropped,
                    modules=row.modules if isinstance(row.modules, dict) else None,
                )
            )
        if rows_left <= 0:
            break
    return found


def _sampled(ids: list[str], rand: random.Random) -> list[str]:
    return ids if len(ids) <= MAX_COHORT else sorted(rand.sample(ids, MAX_COHORT))


def control_cohort(
    canary_labels: Sequence[Mapping[str, str]],
    pending_labels: Mapping[str, Mapping[str, str]],
    keys: Sequence[str],
    min_samples: int,
) -> tuple[list[str], str]:
    """(control device ids, how they match): the closest match that is big enough."""
    for match_keys, how in (((*keys, _ARCH), "strata and arch"), (tuple(keys), "strata")):
        wanted = {stratum_of(labels, match_keys) for labels in canary_labels}
        matched = [i for i, lab in pending_labels.items() if stratum_of(lab, match_keys) in wanted]
        if len(matched) >= min_samples:
            return sorted(matched), how
    return sorted(pending_labels), "any pending device"


def analyse_wave(
    session: Session,
    *,
    spec: AnalysisSpec,
    wave: int,
    members: Sequence[RolloutDeviceRow],
    state: Mapping[str, Any],
    now: dt.datetime,
) -> tuple[AnalysisResult, dict[str, Any]] | None:
    """The wave's verdict and what to record of it; None when no device is
    left on the old revision to compare with (the last wave)."""
    canaries = [m for m in members if m.wave == wave and m.state == DeviceState.SUCCEEDED]
    pending = [m.device_id for m in members if m.state == DeviceState.PENDING]
    if not pending:
        return None
    rand = random.Random(f"{state.get('seed', 0)}:{wave}")
    wanted_ids = [m.device_id for m in canaries] + pending
    labels = {
        row.id: effective_labels(row)
        for start in range(0, len(wanted_ids), _IN_CHUNK)
        for row in session.scalars(
            select(DeviceRow).where(DeviceRow.id.in_(wanted_ids[start : start + _IN_CHUNK]))
        )
    }
    keys = list(state.get("strata_keys") or [])
    canary_ids = _sampled(sorted(m.device_id for m in canaries if m.device_id in labels), rand)
    controls, how = control_cohort(
        [labels[i] for i in canary_ids],
        {i: labels[i] for i in pending if i in labels},
        keys,
        spec.min_samples,
    )
    controls = _sampled(controls, rand)
    now_ms = epoch_ms(now)
    healthy = {m.device_id: m.healthy_since or now for m in canaries}
    canary_since = {i: epoch_ms(healthy[i]) for i in canary_ids}
    window_start = min(canary_since.values(), default=now_ms)
    result = analyse(
        spec,
        read_samples(session, canary_since),
        read_samples(session, dict.fromkeys(controls, window_start)),
    )
    record = {
        "wave": wave + 1,
        "at": now.isoformat(),
        "outcome": result.outcome,
        "control": how,
        "window_s": round((now_ms - window_start) / 1000, 1),
        "metrics": [m.to_json() for m in result.metrics],
    }
    return result, record
