"""The golden wire messages (tests/protocol/golden/) and the code that makes
them on each side, shared by the golden tests.

`NAME.json` (and `NAME.SAMPLE.json`) is a message as this version sends it;
`NAME.older.json` as an older peer sends it (fields missing), `NAME.newer.json`
as a newer peer does (fields, values this version does not know), and
`NAME.v2.json` a major version this one must not read. desired_state.json,
.empty, .unscoped and .rollback were compiled by the hub before the contract
was typed (see test_revision_stability.py); .sensors carries ingest token
digests and MQTT sensor accounts (issue #14).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from fogline.agent.modules import Drift, node_module_manager
from fogline.agent.supervisor import MemoryRuntime, ModuleStatus, State
from fogline.agent.updater import ReleaseTarget, UpdateProgress, UpdateResult
from fogline.agent.updater import State as UpdateStep
from fogline.protocol import (
    AppliedState,
    ApplyResult,
    ClaimCreate,
    ClaimCreated,
    ClaimView,
    DeploymentView,
    DesiredStateDoc,
    DeviceFacts,
    DeviceView,
    DriftKind,
    EnrollRequest,
    EnrollResponse,
    ErrorBody,
    LabelChange,
    ManifestRequest,
    OutboxReport,
    PlanResult,
    RenewRequest,
    RenewResponse,
    Report,
    ReportAck,
    TelemetryAck,
)

GOLDEN = Path(__file__).parent / "golden"

# Each message kind and its model; `desired_state` and `telemetry_batch` have
# their own readers (parse_desired_state, decode_batch) too.
MODELS: dict[str, type[BaseModel]] = {
    "apply_result": ApplyResult,
    "claim_create": ClaimCreate,
    "claim_created": ClaimCreated,
    "claim_view": ClaimView,
    "deployment_view": DeploymentView,
    "desired_state": DesiredStateDoc,
    "device_view": DeviceView,
    "enroll_request": EnrollRequest,
    "enroll_response": EnrollResponse,
    "error": ErrorBody,
    "label_change": LabelChange,
    "manifest_request": ManifestRequest,
    "plan_result": PlanResult,
    "renew_request": RenewRequest,
    "renew_response": RenewResponse,
    "report": Report,
    "report_ack": ReportAck,
    "telemetry_ack": TelemetryAck,
}


def variant_of(path: Path) -> str:
    """ "older", "newer", "v2" (a major version this one does not read), or
    "" for this version's messages (desired_state.empty.json is one too)."""
    parts = path.name.split(".")[1:-1]
    return parts[0] if parts and parts[0] in ("older", "newer", "v2") else ""


def golden_files(variant: str = "") -> list[Path]:
    return sorted(p for p in GOLDEN.glob("*.json") if variant_of(p) == variant)


def kind_of(path: Path) -> str:
    return path.name.split(".")[0]


def read(path: Path) -> Any:
    return json.loads(path.read_text())


def golden(name: str) -> Any:
    return read(GOLDEN / name)


def params(variant: str = "") -> list[Any]:
    return [pytest.param(p, id=p.name) for p in golden_files(variant)]


async def agent_report(data_dir: Path) -> Report:
    """The report the agent builds, from the agent's own objects: supervisor
    statuses, an installed bundle, update outcomes and progress, drift, outbox."""
    async with httpx.AsyncClient() as http:
        manager = node_module_manager(data_dir, MemoryRuntime(), http, {}, lambda: None)
    web = ModuleStatus(
        name="web-app",
        version="2.0.0",
        state=State.CRASH_LOOP,
        pid=None,
        restarts=3,
        last_exit_code=1,
        last_error="exited with status 1",
        stderr_tail="Traceback (most recent call last):\n  ...\nValueError: port\n",
        since=812.5,
    )
    thermo = ModuleStatus("thermo", "1.5.0", State.HEALTHY, 4242, 0, None, None, "", 700.25)
    manager.supervisor.statuses = lambda: {"thermo": thermo, "web-app": web}  # type: ignore[method-assign]
    manager.activator.bundles.add("model-a")
    target = ReleaseTarget("model-a", "3.1.0", "sha256:" + "c" * 64, b"")
    manager.updater.installed = lambda name: SimpleNamespace(target=target)  # type: ignore[method-assign, assignment, return-value]
    manager._record(UpdateResult("thermo", "1.5.0", target.digest, UpdateStep.DONE))
    manager._record(
        UpdateResult(
            "web-app",
            "2.0.0",
            "sha256:" + "b" * 64,
            UpdateStep.FAILED,
            error="web-app 2.0.0 did not become healthy within 30s",
            failed_in=UpdateStep.HEALTH,
        )
    )
    manager.on_progress(
        UpdateProgress("web-app", "2.0.0", "sha256:" + "b" * 64, UpdateStep.CLEANUP, "rolled back")
    )
    manager.drift = [
        Drift("thermo", DriftKind.CONFIG, "config.json differs from the desired config")
    ]
    manager.drift_policy = "correct"
    manager.corrections = 2
    return Report(
        facts=DeviceFacts(
            agent_version="0.1.0",
            hostname="berlin-gw-7",
            os="linux",
            arch="aarch64",
            uptime_s=930.5,
        ),
        labels={"site": "berlin"},
        applied=AppliedState(revision=golden("desired_state.json")["revision"], ok=True),
        outbox=OutboxReport(
            depth=17,
            bytes=20480,
            max_bytes=268435456,
            oldest_age_s=4.5,
            dropped_quota=3,
            expired=1,
            dead_lettered=0,
            dropped_by_priority={"1": 3},
            reset_after_corruption=False,
        ),
        modules=await manager.statuses_for_report(),
    )
