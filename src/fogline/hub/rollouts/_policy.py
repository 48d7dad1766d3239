"""`spec.rollout`: the schema of a deployment's rollout policy, and wave sizes.

    rollout:
      waves: [1%, 10%, 50%, 100%]   # cumulative share (or count) of devices
      bake: 10m                     # healthy this long on the new revision
      successThreshold: 95%         # of a wave's (not skipped) devices
      maxFailures: 2                # failed devices in the whole rollout
      onFailure: pause              # or rollback
      waveTimeout: 30m              # then: online and not done = failed, offline = skipped
      analysis: {...}               # canary analysis: see _analysis_spec

A deployment without `spec.rollout` gets `DEFAULT_POLICY`: one wave of all
devices, no bake and no gate (`gated` is False), which is how applies
behaved before rollouts. Such a rollout completes whatever its devices do,
so nothing about it may read as a gate: not its summary, not its audit.
"""

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Final, Literal

from fogline.manifest import BlockError, parse_duration

from ._analysis_spec import AnalysisSpec, parse_analysis

OnFailure = Literal["pause", "rollback"]
MAX_WAVES: Final = 20
_KEYS: Final = frozenset(
    {"waves", "bake", "successThreshold", "maxFailures", "onFailure", "waveTimeout", "analysis"}
)
_PERCENT: Final = re.compile(r"(\d{1,3}(?:\.\d{1,4})?)%")


@dataclass(frozen=True, slots=True)
class Share:
    """A share of devices: a percentage (`10%`) or an absolute count (`3`)."""

    percent: float | None = None
    count: int | None = None

    def of(self, total: int) -> int:
        """How many of `total` devices; a percentage rounds up, so 1% of 5 is 1."""
        if self.count is not None:
            return min(self.count, total)
        assert self.percent is not None
        return min(total, math.ceil(total * self.percent / 100 - 1e-9))

    def text(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else str(self.count)


@dataclass(frozen=True, slots=True)
class RolloutPolicy:
    waves: tuple[Share, ...]
    bake_s: float
    success_threshold: float  # fraction 0..1
    max_failures: Share
    on_failure: OnFailure
    wave_timeout_s: float
    # False only for DEFAULT_POLICY (no spec.rollout): no threshold stops it.
    gated: bool = True
    # Canary analysis of each wave against the devices still on the old
    # revision (`spec.rollout.analysis`); None: the health gate alone.
    analysis: AnalysisSpec | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["analysis"] = self.analysis.to_json() if self.analysis is not None else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "RolloutPolicy":
        policy = cls(
            waves=tuple(Share(**w) for w in data["waves"]),
            bake_s=float(data["bake_s"]),
            success_threshold=float(data["success_threshold"]),
            max_failures=Share(**data["max_failures"]),
            on_failure="rollback" if data["on_failure"] == "rollback" else "pause",
            wave_timeout_s=float(data["wave_timeout_s"]),
        )
        if data.get("analysis"):
            policy = replace(policy, analysis=AnalysisSpec.from_json(data["analysis"]))
        if "gated" in data:
            return replace(policy, gated=bool(data["gated"]))
        # Stored before `gated` existed: the default policy is the one that
        # lets every failure through.
        ungated = replace(policy, gated=False) == DEFAULT_POLICY
        return replace(policy, gated=not ungated)

    def summary(self) -> str:
        """`waves 1%,10%,100%, bake 10s, onFailure pause` for plans and tables."""
        if not self.gated:
            return "one wave of all devices, no health gate (no spec.rollout)"
        waves = ",".join(w.text() for w in self.waves)
        text = f"waves {waves}, bake {self.bake_s:g}s, onFailure {self.on_failure}"
        return f"{text}, {self.analysis.summary()}" if self.analysis is not None else text


DEFAULT_POLICY: Final = RolloutPolicy(
    waves=(Share(percent=100.0),),
    bake_s=0.0,
    success_threshold=0.0,
    max_failures=Share(percent=100.0),
    on_failure="pause",
    wave_timeout_s=600.0,
    gated=False,
)
# What an explicit `spec.rollout` gets for the keys it leaves out.
_DEFAULTS: Final = RolloutPolicy(
    waves=(Share(percent=100.0),),
    bake_s=30.0,
    success_threshold=1.0,
    max_failures=Share(count=0),
    on_failure="pause",
    wave_timeout_s=600.0,
)


def _share(value: Any, path: tuple[str | int, ...], *, allow_zero: bool) -> Share:
    if isinstance(value, bool):
        raise BlockError(path, f"must be a percentage like 10% or a count, not {value!r}")
    if isinstance(value, int):
        if value < (0 if allow_zero else 1) or value > 10_000_000:
            raise BlockError(path, f"count must be between {0 if allow_zero else 1} and 1e7")
        return Share(count=value)
    if isinstance(value, str):
        match = _PERCENT.fullmatch(value.strip())
        if match is not None:
            percent = float(match.group(1))
            if percent > 100 or (percent == 0 and not allow_zero):
                raise BlockError(path, f"percentage must be in (0%, 100%] (got {value!r})")
            return Share(percent=percent)
    raise BlockError(path, f"must be a percentage like 10% or a count (got {str(value)[:40]!r})")


def _fraction(value: Any, path: tuple[str | int, ...]) -> float:
    if isinstance(value, str):
        match = _PERCENT.fullmatch(value.strip())
        if match is None:
            raise BlockError(path, f"must be a fraction like 0.95 or a percentage (got {value!r})")
        fraction = float(match.group(1)) / 100
    elif isinstance(value, int | float) and not isinstance(value, bool):
        fraction = float(value)
    else:
        raise BlockError(path, f"must be a fraction like 0.95 or a percentage (got {value!r})")
    if not 0 <= fraction <= 1:
        raise BlockError(path, f"must be between 0 and 1 (0% and 100%), got {value!r}")
    return fraction


def _duration(value: Any, path: tuple[str | int, ...], *, minimum_s: float) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise BlockError(path, str(exc)) from None
    if seconds < minimum_s or seconds > 30 * 86400:
        raise BlockError(path, f"must be between {minimum_s:g}s and 30d (got {value!r})")
    return seconds


def parse_rollout_policy(block: Mapping[str, Any]) -> RolloutPolicy:
    """The policy a `spec.rollout` block declares; an empty block is DEFAULT_POLICY.

    Raises:
        BlockError: an unknown key or a bad value, with its path in the block.
    """
    if not block:
        return DEFAULT_POLICY
    unknown = sorted(set(block) - _KEYS)
    if unknown:
        raise BlockError((unknown[0],), f"unknown key; expected one of {', '.join(sorted(_KEYS))}")
    policy = _DEFAULTS
    waves = policy.waves
    if "waves" in block:
        raw = block["waves"]
        if isinstance(raw, str | bytes) or not isinstance(raw, list | tuple) or not raw:
            raise BlockError(("waves",), "must be a non-empty list like [1%, 10%, 100%]")
        if len(raw) > MAX_WAVES:
            raise BlockError(("waves",), f"at most {MAX_WAVES} waves (got {len(raw)})")
        waves = tuple(_share(w, ("waves", i), allow_zero=False) for i, w in enumerate(raw))
        for i in range(1, len(waves)):
            a, b = waves[i - 1], waves[i]
            same_kind = (a.percent is None) == (b.percent is None)
            if same_kind and (a.percent or a.count or 0) > (b.percent or b.count or 0):
                raise BlockError(("waves", i), "waves are cumulative and must not shrink")
    on_failure = block.get("onFailure", policy.on_failure)
    if on_failure not in ("pause", "rollback"):
        raise BlockError(("onFailure",), f"must be pause or rollback (got {on_failure!r})")
    return RolloutPolicy(
        waves=waves,
        bake_s=_duration(block["bake"], ("bake",), minimum_s=0)
        if "bake" in block
        else policy.bake_s,
        success_threshold=_fraction(block["successThreshold"], ("successThreshold",))
        if "successThreshold" in block
        else policy.success_threshold,
        max_failures=_share(block["maxFailures"], ("maxFailures",), allow_zero=True)
        if "maxFailures" in block
        else policy.max_failures,
        on_failure="rollback" if on_failure == "rollback" else "pause",
        wave_timeout_s=_duration(block["waveTimeout"], ("waveTimeout",), minimum_s=0.5)
        if "waveTimeout" in block
        else policy.wave_timeout_s,
        analysis=parse_analysis(block["analysis"]) if "analysis" in block else None,
    )


def check_rollout(block: Mapping[str, Any]) -> None:
    """The `rollout` BlockValidator: refuse a bad policy at plan/apply time."""
    parse_rollout_policy(block)


def wave_bounds(policy: RolloutPolicy, total: int, *, min_first: int = 1) -> list[int]:
    """Cumulative device counts at the end of each non-empty wave.

    The last wave always reaches every device, whatever the list says, so a
    rollout never strands devices; waves that add nobody are dropped. The
    first wave has at least `min_first` devices (one per stratum: see
    `_canaries`).
    """
    bounds: list[int] = []
    for wave in policy.waves:
        size = max(1, wave.of(total)) if total else 0
        if not bounds:
            size = max(size, min(min_first, total))
        if size > (bounds[-1] if bounds else 0):
            bounds.append(size)
    if not bounds or bounds[-1] < total:
        bounds.append(total)
    return bounds
