"""Self-healing restarts: a module whose memory trend crosses a limit.

    spec:
      selfHealing:
        restartOnMemoryTrend: {limit: 512MiB, within: 1h, cooldown: 1h, modules: [web]}

A module (of `modules`, or of the deployment's own modules) on a device the
deployment selects is restarted when the Theil-Sen trend of its RSS
(_forecast.py) rises beyond noise and is at `limit` already or reaches it
within `within`. The series is the module's since it last started: cut
where its restart count moved, and at the hub's last restart request.

The forecast pass hands each device's samples to `RestartPlanner.visit`
(one read of the series for both), which keeps the candidates; then
`restart_pass`, in its own transaction, skips a device that:

- the deployment no longer selects, or that is revoked;
- is in an active rollout (its revision is what the rollout waits for, and
  the canary analysis judges its restarts);
- had a restart of that module asked within `cooldown` (the audit trail
  says when), so a module that leaks fast is not restarted in a loop;

and asks for the others: the module's entry in the device's stored desired
document gets `restartGeneration` one above the last one asked or honoured
(fogline.protocol.DesiredModule), and the new revision wakes the device.
Audited as `module.restart` by the actor `hub`, with the trend in the
detail. The node restarts the module once per generation and reports the
generation honoured (ModuleReport.restart_generation).

A recompile of the device's document (an apply, a label change, a rollout)
writes the generation the node last reported honoured (_desired.compile_for),
so a honoured request changes no later revision, and `fogline plan` shows
no change for it; a request the node had not yet honoured is then dropped,
and asked again after the cooldown if the trend still says so.
"""

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from fogline._duration import parse_duration
from fogline._size import parse_size
from fogline.manifest import Deployment, DesiredState, revision_of

from ._audit import HUB_ACTOR, record_audit
from ._desired import honoured_restarts, plain, store_desired_many
from ._device_labels import effective_labels
from ._forecast import Eta, ForecastSettings, Trend, bytes_per_hour, fit_trend, time_to_limit
from ._schema import AuditRow, DesiredStateRow, DeviceRow, RolloutDeviceRow, RolloutRow
from .rollouts import ACTIVE as ACTIVE_ROLLOUT_STATES

RESTART_ACTION: Final = "module.restart"
# Candidates kept per pass, and restarts asked per pass, at most.
MAX_CANDIDATES: Final = 10_000
MAX_RESTARTS_PER_PASS: Final = 100
# Earlier requests read per device to find the cooldown and the generation.
_MAX_AUDIT_READ: Final = 200
# DesiredModule.restart_generation's bound (exact in a JSON double).
MAX_GENERATION: Final = 2**53


@dataclass(frozen=True, slots=True)
class MemoryTrendPolicy:
    """A deployment's restartOnMemoryTrend (checked by the manifest schema)."""

    deployment: Deployment
    limit_bytes: int
    within_s: float
    cooldown_s: float
    modules: frozenset[str]


def restart_policy(deployment: Deployment) -> MemoryTrendPolicy | None:
    rule: Any = deployment.self_healing.get("restartOnMemoryTrend")
    if not isinstance(rule, Mapping):
        return None
    named = rule.get("modules")
    modules = (
        frozenset(str(m) for m in named)
        if named
        else frozenset(str(m.get("name")) for m in deployment.modules if isinstance(m, Mapping))
    )
    return MemoryTrendPolicy(
        deployment,
        parse_size(rule["limit"]),
        parse_duration(rule.get("within", "1h")),
        parse_duration(rule.get("cooldown", "1h")),
        modules,
    )


@dataclass(frozen=True, slots=True)
class RestartDecision:
    """Why a module is to be restarted: its trend, and when it reaches the
    limit (None: it is there already)."""

    module: str
    limit_bytes: int
    trend: Trend
    eta: Eta | None

    def words(self) -> str:
        rss = f"{self.module} RSS {self.trend.level[0] / 2**20:.0f} MiB"
        limit = f"{self.limit_bytes / 2**20:.0f} MiB"
        rising = f"rising {bytes_per_hour(self.trend.slope)}"
        if self.eta is None:
            return f"{rss} {rising}, over its limit of {limit}"
        return f"{rss} {rising}, reaches its limit of {limit} in {self.eta.words()}"

    def detail(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "limit_bytes": self.limit_bytes,
            "rss_bytes": int(self.trend.level[0]),
            "bytes_per_s": self.trend.slope,
            "low_bytes_per_s": self.trend.low_slope,
            "points": self.trend.points,
            "eta_s": None if self.eta is None else round(self.eta.seconds, 1),
        }


def decide_restart(
    module: str,
    times_s: Sequence[float],
    rss_bytes: Sequence[float],
    limit_bytes: int,
    within_s: float,
    settings: ForecastSettings,
) -> RestartDecision | None:
    """Whether a module's RSS series (since it last started, oldest first)
    calls for a restart: rising beyond noise (the slope's whole interval
    above zero), and at the limit or reaching it within `within_s`. Pure."""
    trend = fit_trend(times_s, rss_bytes, settings)
    if trend is None or not trend.is_rising:
        return None
    if trend.level[0] >= limit_bytes:
        return RestartDecision(module, limit_bytes, trend, None)
    eta = time_to_limit(trend, limit_bytes)
    if eta is None or eta.seconds > within_s:
        return None
    return RestartDecision(module, limit_bytes, trend, eta)


def module_series(
    points: Sequence[Any], module: str, since_ms: int = 0
) -> list[tuple[float, float]]:
    """(seconds, RSS) of one module from a device's samples (rows with at_ms
    and modules), since it last started: after `since_ms`, and after the last
    change of its restart count (the supervisor restarted it)."""
    series: list[tuple[float, float]] = []
    restarts: object = None
    for point in points:
        if point.at_ms <= since_ms:
            continue
        health = (point.modules or {}).get(module)
        if not isinstance(health, dict):
            continue
        rss = health.get("rss_bytes")
        if not isinstance(rss, int):
            continue
        count = health.get("restarts")
        if restarts is not None and count != restarts:
            series.clear()  # a new process: its memory starts again
        restarts = count
        series.append((point.at_ms / 1000, float(rss)))
    return series


@dataclass(frozen=True, slots=True)
class RestartCandidate:
    device_id: str
    policy: MemoryTrendPolicy
    module: str
    points: tuple[Any, ...]  # the device's samples, for the decision after the cut


class RestartPlanner:
    """Collects the restart candidates while the forecast pass reads series."""

    def __init__(self, policies: Sequence[MemoryTrendPolicy], settings: ForecastSettings) -> None:
        self.policies = list(policies)
        self.settings = settings
        self.candidates: list[RestartCandidate] = []

    def visit(self, device_id: str, points: list[Any]) -> None:
        for policy in self.policies:
            for module in sorted(policy.modules):
                if len(self.candidates) >= MAX_CANDIDATES:
                    return
                series = module_series(points, module)
                decision = decide_restart(
                    module,
                    [t for t, _ in series],
                    [v for _, v in series],
                    policy.limit_bytes,
                    policy.within_s,
                    self.settings,
                )
                if decision is not None:
                    self.candidates.append(
                        RestartCandidate(device_id, policy, module, tuple(points))
                    )


def restart_policies(deployments: Sequence[Deployment]) -> list[MemoryTrendPolicy]:
    return [p for d in deployments if (p := restart_policy(d)) is not None]


def restart_pass(
    session: Session,
    now: dt.datetime,
    candidates: Sequence[RestartCandidate],
    settings: ForecastSettings,
) -> list[tuple[str, str]]:
    """Ask for the restarts the candidates call for, in the caller's
    transaction; returns (device name, module) of each."""
    asked: list[tuple[str, str]] = []
    done: set[tuple[str, str]] = set()
    for candidate in candidates:
        if len(asked) >= MAX_RESTARTS_PER_PASS:
            break
        key = (candidate.device_id, candidate.module)
        if key in done:
            continue  # two deployments watching one module: one restart
        device = session.get(DeviceRow, candidate.device_id)
        if device is None or device.revoked_at is not None:
            continue
        if not candidate.policy.deployment.selector.matches(effective_labels(device)):
            continue
        if _in_active_rollout(session, device.id):
            continue
        last_at, last_generation = _last_request(session, device.name, candidate.module)
        if last_at is not None and now - last_at < dt.timedelta(
            seconds=candidate.policy.cooldown_s
        ):
            continue
        since_ms = int(last_at.timestamp() * 1000) if last_at is not None else 0
        series = module_series(candidate.points, candidate.module, since_ms)
        decision = decide_restart(
            candidate.module,
            [t for t, _ in series],
            [v for _, v in series],
            candidate.policy.limit_bytes,
            candidate.policy.within_s,
            settings,
        )
        if decision is None:
            continue
        honoured = honoured_restarts(device.reported).get(candidate.module, 0)
        generation = max(last_generation, honoured) + 1
        if generation > MAX_GENERATION:  # a node reporting nonsense: its document stays valid
            continue
        if not _request(session, device, candidate.module, generation):
            continue
        done.add(key)
        record_audit(
            session,
            HUB_ACTOR,
            RESTART_ACTION,
            device.name,
            device_id=device.id,
            deployment=candidate.policy.deployment.name,
            generation=generation,
            reason=decision.words(),
            **decision.detail(),
        )
        asked.append((device.name, candidate.module))
    return asked


def _in_active_rollout(session: Session, device_id: str) -> bool:
    found = session.scalar(
        select(RolloutDeviceRow.rollout_id)
        .join(RolloutRow, RolloutRow.id == RolloutDeviceRow.rollout_id)
        .where(
            RolloutDeviceRow.device_id == device_id,
            RolloutRow.state.in_([state.value for state in ACTIVE_ROLLOUT_STATES]),
        )
        .limit(1)
    )
    return found is not None


def _last_request(session: Session, device: str, module: str) -> tuple[dt.datetime | None, int]:
    """When the hub last asked to restart `module` on `device`, and the
    highest generation it asked for (0: never)."""
    rows = session.execute(
        select(AuditRow.at, AuditRow.detail)
        .where(AuditRow.action == RESTART_ACTION, AuditRow.target == device)
        .order_by(AuditRow.id.desc())
        .limit(_MAX_AUDIT_READ)
    ).all()
    last: dt.datetime | None = None
    generation = 0
    for at, detail in rows:
        if not isinstance(detail, dict) or detail.get("module") != module:
            continue
        last = at if last is None else max(last, at)
        asked = detail.get("generation")
        if isinstance(asked, int):
            generation = max(generation, asked)
    return last, generation


def _request(session: Session, device: DeviceRow, module: str, generation: int) -> bool:
    """Write the request into the device's stored document; False when the
    document does not run `module` (the node could not honour it)."""
    row = session.get(DesiredStateRow, device.id)
    if row is None:
        return False
    document = plain(row.document)
    entries = document.get("modules")
    if not isinstance(entries, list):
        return False
    for entry in entries:
        if isinstance(entry, dict) and entry.get("name") == module:
            entry["restartGeneration"] = generation
            break
    else:
        return False
    store_desired_many(session, [(device.id, DesiredState(revision_of(document), document))])
    return True
