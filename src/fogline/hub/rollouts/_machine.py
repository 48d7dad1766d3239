"""The rollout state machine and the pure wave logic (no database here).

A rollout moves through `TRANSITIONS` only; the scheduler and the operator
API turn what happened into an `Event` and look the next state up. Whether a
device succeeded, and whether a wave may pass, are pure functions of what
devices reported and the policy, so they are unit-tested without a hub.
"""

import datetime as dt
import enum
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from fogline._statetable import StateTable
from fogline.protocol import ModulesReport

from ._policy import RolloutPolicy


class State(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled-back"
    ABORTED = "aborted"
    SUPERSEDED = "superseded"


class Event(enum.StrEnum):
    LAST_WAVE_PASSED = "last-wave-passed"  # its gate passed
    LAST_WAVE_ENDED = "last-wave-ended"  # no gate (no spec.rollout): it ends whatever happened
    GATE_FAILED_PAUSE = "gate-failed-pause"  # policy onFailure: pause
    GATE_FAILED_ROLLBACK = "gate-failed-rollback"  # policy onFailure: rollback
    PAUSE = "pause"
    RESUME = "resume"
    ABORT = "abort"
    ROLLBACK = "rollback"
    SUPERSEDE = "supersede"


ACTIVE: Final = frozenset({State.RUNNING, State.PAUSED})

TRANSITIONS: Final[Mapping[tuple[State, Event], State]] = {
    (State.RUNNING, Event.LAST_WAVE_PASSED): State.COMPLETED,
    (State.RUNNING, Event.LAST_WAVE_ENDED): State.COMPLETED,
    (State.RUNNING, Event.GATE_FAILED_PAUSE): State.PAUSED,
    (State.RUNNING, Event.GATE_FAILED_ROLLBACK): State.ROLLED_BACK,
    (State.RUNNING, Event.PAUSE): State.PAUSED,
    (State.RUNNING, Event.ABORT): State.ABORTED,
    (State.RUNNING, Event.ROLLBACK): State.ROLLED_BACK,
    (State.RUNNING, Event.SUPERSEDE): State.SUPERSEDED,
    # A paused rollout is not ticked, so no gate or wave events reach it.
    (State.PAUSED, Event.RESUME): State.RUNNING,
    (State.PAUSED, Event.ABORT): State.ABORTED,
    (State.PAUSED, Event.ROLLBACK): State.ROLLED_BACK,
    (State.PAUSED, Event.SUPERSEDE): State.SUPERSEDED,
    # COMPLETED, ROLLED_BACK, ABORTED and SUPERSEDED are final: no edges, so
    # nothing reopens a rollout; a new apply starts a new one.
}


TABLE: Final = StateTable("rollout", TRANSITIONS)


def can_fire(state: State, event: Event) -> bool:
    """Whether `event` applies in `state` (an operator's action may not: 409)."""
    return TABLE.has_edge(state, event)


def next_state(state: State, event: Event) -> State:
    """The state after `event` in `state`.

    Raises:
        MissingTransitionError: no such edge; ask `can_fire` first where an
            event may not apply.
    """
    return TABLE.next_state(state, event)


class DeviceState(enum.StrEnum):
    PENDING = "pending"  # its wave has not started: still served the old document
    UPDATING = "updating"  # served the new document; not yet applied and baked
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # offline past waveTimeout; it catches up when back
    REVERTED = "reverted"  # rolled back: served its previous document again


# Skipped devices are still watched: one that comes back and bakes succeeds.
WATCHED: Final = frozenset({DeviceState.UPDATING, DeviceState.SKIPPED})


@dataclass(frozen=True, slots=True)
class Observation:
    """What the hub knows about one device right now."""

    applied_revision: str | None
    applied_ok: bool
    applied_error: str | None
    problem: str | None  # an unhealthy module or failed update, from the last report
    online: bool


@dataclass(frozen=True, slots=True)
class Verdict:
    state: DeviceState
    healthy_since: dt.datetime | None
    reason: str | None = None


def health_problem(
    reported: Mapping[str, Any] | None, target_modules: Collection[str] | None = None
) -> str | None:
    """The first unhealthy module or failed update in a device's last report
    (what the hub stored of it, read through the wire model), or None.

    The states judged are the protocol's (`UNHEALTHY_MODULE_STATES`); a
    stored report that does not parse has nothing to judge. Given the
    modules the target document runs, a failed update of any other module
    is left out: the node keeps reporting the last outcome of a module
    after it leaves its desired state, and that says nothing of the target.
    """
    block = (reported or {}).get("modules")
    if block is None:
        return None
    try:
        modules = ModulesReport.model_validate(block)
    except ValidationError:
        return None
    if target_modules is not None:
        kept = {name: o for name, o in modules.updates.items() if name in target_modules}
        modules = modules.model_copy(update={"updates": kept})
    return modules.health_problem()


def document_modules(document: Mapping[str, Any] | None) -> frozenset[str]:
    """The names of the modules a stored desired document runs."""
    entries = (document or {}).get("modules") or ()
    return frozenset(str(e["name"]) for e in entries if isinstance(e, Mapping) and "name" in e)


def judge_device(
    state: DeviceState,
    target_revision: str,
    started_at: dt.datetime,
    healthy_since: dt.datetime | None,
    seen: Observation,
    policy: RolloutPolicy,
    now: dt.datetime,
) -> Verdict:
    """Where one watched device (updating or skipped) stands now."""
    if seen.applied_revision == target_revision:
        if not seen.applied_ok:
            return Verdict(
                DeviceState.FAILED, None, f"node refused the revision: {seen.applied_error or '?'}"
            )
        if seen.problem is not None:
            return Verdict(DeviceState.FAILED, None, seen.problem)
        if not seen.online:
            # The bake counts only time the device was seen healthy: an
            # offline device's last word may be stale, so its bake starts
            # again when it is back.
            if state is DeviceState.SKIPPED:
                return Verdict(state, None, "offline after waveTimeout")
            if (now - started_at).total_seconds() >= policy.wave_timeout_s:
                return Verdict(DeviceState.SKIPPED, None, "offline after waveTimeout")
            return Verdict(DeviceState.UPDATING, None)
        since = healthy_since or now
        if (now - since).total_seconds() >= policy.bake_s:
            return Verdict(DeviceState.SUCCEEDED, since)
        if state is DeviceState.SKIPPED:
            return Verdict(state, since)
        return Verdict(DeviceState.UPDATING, since)
    if state is DeviceState.SKIPPED:
        return Verdict(state, None, "offline after waveTimeout")
    if (now - started_at).total_seconds() >= policy.wave_timeout_s:
        if seen.online:
            return Verdict(DeviceState.FAILED, None, "not applied and healthy within waveTimeout")
        return Verdict(DeviceState.SKIPPED, None, "offline after waveTimeout")
    return Verdict(DeviceState.UPDATING, None)


@dataclass(frozen=True, slots=True)
class Tally:
    pending: int = 0
    updating: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    reverted: int = 0

    @classmethod
    def of(cls, states: Iterable[DeviceState]) -> "Tally":
        counts = {s: 0 for s in DeviceState}
        for state in states:
            counts[state] += 1
        return cls(*(counts[s] for s in DeviceState))

    @property
    def total(self) -> int:
        return (
            self.pending + self.updating + self.succeeded + self.failed + self.skipped
        ) + self.reverted


class Step(enum.StrEnum):
    WAIT = "wait"
    NEXT_WAVE = "next-wave"
    COMPLETE = "complete"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Decision:
    step: Step
    reason: str = ""


def decide(
    policy: RolloutPolicy,
    *,
    wave: int,
    last_wave: int,
    current: Tally,
    failed_total: int,
    accepted_failures: int,
    devices_total: int,
    gate_accepted: bool,
) -> Decision:
    """What a running rollout does next, from its current wave's tally.

    `accepted_failures` and `gate_accepted` record an operator's resume after
    a failed gate: those failures, and this wave's threshold, no longer stop it.
    """
    if not policy.gated:  # no spec.rollout: no threshold stops it (see DEFAULT_POLICY)
        if current.updating or current.pending:
            return Decision(Step.WAIT)
        return Decision(Step.COMPLETE if wave >= last_wave else Step.NEXT_WAVE)
    allowed = policy.max_failures.of(devices_total)
    if failed_total - accepted_failures > allowed:
        return Decision(
            Step.FAIL,
            f"{failed_total - accepted_failures} failed device(s) exceed maxFailures "
            f"{policy.max_failures.text()} ({allowed} of {devices_total})",
        )
    if current.updating or current.pending:
        return Decision(Step.WAIT)
    judged = current.succeeded + current.failed
    if not gate_accepted and judged == 0 and current.skipped and policy.success_threshold > 0:
        # Every device was offline: nothing shows the release works, so the
        # gate cannot pass by itself; an operator's resume accepts it.
        return Decision(
            Step.FAIL,
            f"wave {wave + 1}: all {current.skipped} device(s) were offline, revoked or "
            "removed (skipped); "
            "no device showed the release healthy",
        )
    needed = math.ceil(policy.success_threshold * judged - 1e-9)
    if not gate_accepted and current.succeeded < needed:
        return Decision(
            Step.FAIL,
            f"wave {wave + 1}: {current.succeeded} of {judged} device(s) succeeded; "
            f"successThreshold {policy.success_threshold:.0%} needs {needed}",
        )
    if wave >= last_wave:
        return Decision(Step.COMPLETE)
    return Decision(Step.NEXT_WAVE)
