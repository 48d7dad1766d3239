"""Rehearse a rollout: a throwaway hub, stand-in releases and a virtual fleet.

plan_rehearsal(manifests)  what the manifest needs: releases, labels, deployments
rehearse(...)              hub up -> key, TUF repository, stand-ins signed into
                           it, claim -> fleet online (each node pins the TUF
                           root) -> apply -> watch the rollout -> tear down

The fleet verifies every update through TUF, as a production fleet whose
hub has a TUF repository does (see `_tuf`): the rehearsal measures and
exercises that path, not the release-key one.
"""

import contextlib
import datetime as dt
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from fogline.artifact import generate_release_key

from ._errors import RehearsalError, SimError
from ._faults import Faults
from ._fleet import FleetRunner, FleetStats, boot_spread_s, start_fleet
from ._hub import OperatorClient, ThrowawayHub
from ._node import FleetConfig
from ._standins import push_standin, release_key_manifest
from ._tuf import RehearsalTuf

MAX_MANIFEST_BYTES: Final = 4 * 1024 * 1024
MAX_RELEASES: Final = 64
PREFIX: Final = "rehearsal"
# Where a rollout stops moving by itself; `paused` waits for an operator.
_ENDED: Final = frozenset({"completed", "rolled-back", "aborted", "superseded", "paused"})
_POLL_S: Final = 0.5


@dataclass(frozen=True, slots=True)
class RehearsalPlan:
    files: tuple[tuple[str, str], ...]  # (file name, text) as applied
    releases: tuple[tuple[str, str], ...]  # (module name, version) to stand in for
    labels: dict[str, str]  # given to every virtual node by the rehearsal's claim
    deployments: tuple[str, ...]


def _load_documents(path: Path) -> tuple[str, list[Any]]:
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise RehearsalError(f"{path}: larger than {MAX_MANIFEST_BYTES} bytes")
        text = path.read_text()
        return text, list(yaml.safe_load_all(text))
    except OSError as exc:
        raise RehearsalError(f"{path}: {exc.strerror or exc}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise RehearsalError(f"{path}: not valid YAML: {str(exc)[:300]}") from exc


def _mapping(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def plan_rehearsal(paths: Sequence[Path]) -> RehearsalPlan:
    """Read manifests for what a rehearsal must provide; the hub validates the rest at apply.

    Raises:
        RehearsalError: unreadable YAML, no Deployment, or a module named by
            digest (a stand-in cannot have someone else's digest).
    """
    files: list[tuple[str, str]] = []
    releases: dict[tuple[str, str], None] = {}
    deployments: list[str] = []
    labels: dict[str, str] | None = None
    for path in paths:
        text, documents = _load_documents(path)
        files.append((path.name, text))
        for doc in documents:
            if not isinstance(doc, dict) or doc.get("kind") != "Deployment":
                continue
            spec = _mapping(doc.get("spec"))
            deployments.append(str(_mapping(doc.get("metadata")).get("name", "")))
            if labels is None:
                match = _mapping(_mapping(spec.get("selector")).get("matchLabels"))
                labels = {str(k): str(v) for k, v in match.items()}
            modules = spec.get("modules")
            for i, module in enumerate(modules if isinstance(modules, list) else []):
                ref = str(_mapping(module).get("release", ""))
                name, at, version = ref.rpartition("@")
                if not at or not name or ref.startswith("sha256:"):
                    raise RehearsalError(
                        f"{path}: spec.modules[{i}].release: expected NAME@VERSION to stand "
                        f"in for, got {ref[:80]!r}"
                    )
                releases[(name, version)] = None
    if not deployments:
        raise RehearsalError(f"{', '.join(map(str, paths))}: no Deployment to rehearse")
    if len(releases) > MAX_RELEASES:
        raise RehearsalError(f"more than {MAX_RELEASES} module releases referenced")
    return RehearsalPlan(tuple(files), tuple(releases), labels or {}, tuple(deployments))


@dataclass(frozen=True, slots=True)
class RehearsalResult:
    outcome: str  # completed | paused | rolled-back | aborted | superseded | timeout
    reason: str | None
    rollout: dict[str, Any] | None  # the hub's last view of the rollout
    duration_s: float | None  # apply to the end of the rollout
    fleet: FleetStats = field(default_factory=FleetStats)
    tuf_root: int | None = None  # the TUF root version the rehearsal's hub served

    def tuf_line(self) -> str:
        """`TUF: root v1 pinned by 8 of 8 devices, 8 verified updates through it`."""
        if self.tuf_root is None:
            return "TUF: off (release keys only)"
        fleet = self.fleet
        return (
            f"TUF: root v{self.tuf_root} pinned by {fleet.tuf_pinned} of {fleet.nodes} "
            f"devices, {fleet.tuf_verified} verified updates through it"
        )

    @property
    def ok(self) -> bool:
        return self.outcome == "completed"

    def analysis(self) -> dict[str, Any] | None:
        """What canary analysis said, and when: each analysed wave's outcome,
        seconds after the rollout started, and the metrics that did not pass;
        None when the rollout had no analysis or never reached one."""
        view = self.rollout or {}
        waves = (view.get("analysis") or {}).get("waves") or []
        if not waves:
            return None
        try:
            started = dt.datetime.fromisoformat(str(view["created_at"]))
        except (KeyError, ValueError):
            started = None
        found = []
        for wave in waves:
            at = dt.datetime.fromisoformat(str(wave["at"]))
            found.append(
                {
                    "wave": wave.get("wave"),
                    "outcome": wave.get("outcome"),
                    "after_s": round((at - started).total_seconds(), 1) if started else None,
                    "metrics": {m["metric"]: m["outcome"] for m in wave.get("metrics") or []},
                }
            )
        caught = next((w for w in found if w["outcome"] == "fail"), None)
        return {"caught": caught is not None, "first_failure": caught, "waves": found}

    def analysis_line(self) -> str | None:
        """`canary analysis caught it in wave 1, 61.2s after the start: module-rss-growth(web)`."""
        analysis = self.analysis()
        if analysis is None:
            return None
        caught = analysis["first_failure"]
        if caught is not None:
            failed = [name for name, outcome in caught["metrics"].items() if outcome == "fail"]
            return (
                f"canary analysis caught it in wave {caught['wave']}, {caught['after_s']}s "
                f"after the start: {', '.join(failed)}"
            )
        last = analysis["waves"][-1]
        return (
            f"canary analysis: wave {last['wave']} {last['outcome']} "
            f"({', '.join(f'{n} {o}' for n, o in last['metrics'].items())})"
        )

    def summary(self) -> str:
        """One line: what happened and why."""
        view = self.rollout or {}
        wave = f"wave {view.get('current_wave', '?')}/{view.get('waves_total', '?')}"
        took = f" in {self.duration_s:.1f}s" if self.duration_s is not None else ""
        text = {
            "completed": f"completed{took}",
            "paused": f"paused at {wave}{took}",
            "rolled-back": f"rolled back at {wave}{took}",
            "timeout": f"timeout at {wave} (state {view.get('state', 'not started')})",
        }.get(self.outcome, f"{self.outcome} at {wave}{took}")
        return f"{text}: {self.reason}" if self.reason else text

    def to_dict(self) -> dict[str, Any]:
        view = self.rollout or {}
        traffic = self.fleet.traffic
        return {
            "outcome": self.outcome,
            "ok": self.ok,
            "summary": self.summary(),
            "reason": self.reason,
            "duration_s": self.duration_s,
            "rollout_id": view.get("id"),
            "wave": view.get("current_wave"),
            "waves_total": view.get("waves_total"),
            "devices": view.get("devices"),
            "succeeded": view.get("succeeded"),
            "failed": view.get("failed"),
            "skipped": view.get("skipped"),
            "reverted": view.get("reverted"),
            "pending": view.get("pending"),
            "updating": view.get("updating"),
            "artifact_bytes": traffic.artifact_bytes,
            "http_bytes": traffic.http_bytes,
            "fleet": self.fleet.to_dict(),
            "analysis": self.analysis(),
            "tuf": {
                "root_version": self.tuf_root,
                "pinned": self.fleet.tuf_pinned,
                "verified": self.fleet.tuf_verified,
            },
        }


def _apply(client: OperatorClient, files: Sequence[tuple[str, str]]) -> list[str]:
    """Apply `files`; the ids of the rollouts the apply started."""
    body = {"files": [{"name": n, "text": t} for n, t in files], "prune": False}
    result = client.call("POST", "/v1/manifests/apply", json=body)
    return [str(rid) for rid in result.get("rollouts") or ()]


def _wait_online(client: OperatorClient, devices: int, deadline: float) -> None:
    online = 0
    while time.monotonic() < deadline:
        rows = client.devices()
        online = sum(
            1
            for row in rows
            if str(row.get("name", "")).startswith(f"sim-{PREFIX}-") and row.get("last_seen")
        )
        if online >= devices:
            return
        time.sleep(_POLL_S)
    raise RehearsalError(f"only {online} of {devices} virtual devices came online in time")


def _started_rollout(rollouts: Sequence[str], plan: RehearsalPlan) -> str:
    if rollouts:
        return rollouts[0]
    raise RehearsalError(
        "applying the manifest started no rollout: it changed no virtual device "
        f"(the nodes' claim gives them the labels {plan.labels} from the first deployment's "
        "matchLabels)"
    )


def _watch(client: OperatorClient, rollout_id: str, deadline: float) -> tuple[dict[str, Any], bool]:
    view: dict[str, Any] = client.call("GET", f"/v1/rollouts/{rollout_id}")
    while view.get("state") not in _ENDED:
        if time.monotonic() >= deadline:
            return view, False
        time.sleep(_POLL_S)
        view = client.call("GET", f"/v1/rollouts/{rollout_id}")
    return view, True


def _run_baseline(client: OperatorClient, plan: RehearsalPlan, deadline: float) -> None:
    """Apply the baseline and wait for its rollout to complete.

    Raises:
        RehearsalError: it did not complete (the fleet cannot run the baseline).
    """
    rollouts = _apply(client, plan.files)
    if not rollouts:
        return
    view, ended = _watch(client, rollouts[0], deadline)
    if not ended or view.get("state") != "completed":
        raise RehearsalError(
            f"the baseline's rollout did not complete ({view.get('state')}): "
            f"{view.get('reason') or 'timeout'}"
        )


def rehearse(
    paths: Sequence[Path],
    *,
    devices: int,
    faults: Faults,
    timeout_s: float,
    processes: int = 1,
    report_interval_s: float = 1.0,
    progress: Callable[[str], None] = lambda _message: None,
    baseline: Sequence[Path] = (),
) -> RehearsalResult:
    """Roll the manifest out to a virtual fleet on a throwaway hub and say how it went.

    With `baseline` manifests, the fleet first runs them (applied and their
    rollout completed), so the rollout rehearsed is an upgrade: canary
    analysis then has a control cohort running the old releases.

    Raises:
        RehearsalError: the manifest, the hub or the fleet could not be set up.
        SimError: bad fleet parameters.
    """
    plan = plan_rehearsal(paths)
    base_plan = plan_rehearsal(baseline) if baseline else None
    releases = dict.fromkeys(plan.releases)
    if base_plan is not None:
        releases = dict.fromkeys((*base_plan.releases, *plan.releases))
    deadline = time.monotonic() + timeout_s
    with tempfile.TemporaryDirectory(prefix="fogline-rehearse-") as tmp:
        work = Path(tmp)
        hub = ThrowawayHub(work / "hub", report_interval_s=report_interval_s)
        fleet: FleetRunner | None = None
        try:
            hub.start()
            progress(f"throwaway hub on {hub.url}")
            client = hub.client()
            try:
                key = generate_release_key()
                _apply(client, [("rehearsal-key.yaml", release_key_manifest(PREFIX, key))])
                tuf = RehearsalTuf(client, work / "tuf", key)
                tuf.init(name for name, _version in releases)
                tuf_root = tuf.root_version
                progress(f"TUF root v{tuf_root} on the hub; modules delegated to the rehearsal key")
                for name, version in releases:
                    push_standin(client, work, key, name, version)
                    tuf.sign(name, version, work / f"{name}-{version}.tar.zst")
                    progress(f"pushed a stand-in for {name}@{version}, signed into TUF")
                # The claim labels the nodes: the hub selects on claim and
                # operator labels only, never on what a node asks for.
                claim = client.call(
                    "POST",
                    "/v1/claims",
                    json={
                        "labels": {"sim": "true", **plan.labels},
                        "max_uses": devices * 2,
                        "expires_in_s": 86400,
                    },
                )["token"]
                config = FleetConfig(
                    hub_url=hub.url,
                    ca_path=hub.ca,
                    claim=claim,
                    devices=devices,
                    data_dir=work / "fleet",
                    faults=faults,
                    prefix=PREFIX,
                    start_spread_s=boot_spread_s(devices),
                )
                fleet = start_fleet(config, processes)
                _wait_online(client, devices, deadline)
                if base_plan is not None:
                    progress(f"{devices} virtual devices online; applying the baseline")
                    _run_baseline(client, base_plan, deadline)
                progress(f"{devices} virtual devices online; applying the manifest")
                started = time.monotonic()
                rollout_id = _started_rollout(_apply(client, plan.files), plan)
                progress(f"watching rollout {rollout_id}")
                view, ended = _watch(client, rollout_id, deadline)
                duration_s = round(time.monotonic() - started, 2) if ended else None
            finally:
                client.close()
            stats = fleet.stop()
            fleet = None
        finally:
            if fleet is not None:
                # Already failing: the first error is the one to report.
                with contextlib.suppress(SimError):
                    fleet.stop()
            hub.stop()
    outcome = str(view.get("state")) if ended else "timeout"
    reason = view.get("reason") or (None if ended else f"not over after {timeout_s:g}s")
    return RehearsalResult(outcome, reason, view, duration_s, stats, tuf_root)
