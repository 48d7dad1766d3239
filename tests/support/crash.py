"""Kill a real agent with SIGKILL at an updater crash point, restart it, check the node.

Used by tests/agent/test_update_crash_e2e.py (a subset of points) and by
benchmarks/bench_crash_points.py (every point, results in BENCHMARKS.md).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import httpx

from fogline.agent.updater import FAILURE_PATH_POINTS, SUCCESS_PATH_POINTS

from .modules import release
from .processes import AgentProcess, HubProcess, wait_until

CRASH_ENV = "FOGLINE_FAULT_CRASH_AT"
# Points an update from v1 to a good v2 passes through, and those only a
# failing update (a bad v3 from v2) reaches: the updater's own lists.
UPDATE_POINTS = SUCCESS_PATH_POINTS
ROLLBACK_POINTS = FAILURE_PATH_POINTS
# The hub of these sweeps serves no deltas: with them an update from v1 is
# rebuilt from a delta and never reaches download:chunk. The delta path's own
# points (DELTA_PATH_POINTS) are swept in-process by
# tests/agent/updater/test_updater_crash.py and by the power-loss harness.
HUB_ARGS = ["--no-deltas"]


@dataclass
class Fleet:
    """A hub with a trusted key and the `web` module pushed in versions 1, 2 and bad 3."""

    hub: HubProcess
    port: int
    root: Path


def prepare_fleet(hub: HubProcess, root: Path, port: int) -> Fleet:
    keys = root / "keys"
    hub.cli(
        "apply", "-f", "-", input_text=hub.cli("keys", "create", "ci", "--dir", str(keys)).stdout
    )
    for version in ("1.0.0", "2.0.0"):
        release(hub, root, keys / "ci.key", version, port)
    release(hub, root, keys / "ci.key", "3.0.0", port, broken=True)
    return Fleet(hub, port, root)


def _deployment(case: str, version: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {{name: web-{case}}}
        spec:
          selector: {{matchLabels: {{case: "{case}"}}}}
          modules: [{{name: web, release: web@{version}}}]
        """)


def _served(port: int) -> str | None:
    try:
        return str(httpx.get(f"http://127.0.0.1:{port}/", timeout=1).json()["version"])
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def _reported(hub: HubProcess, name: str) -> tuple[str | None, str | None, str | None]:
    device = hub.device(name)
    module = ((device.get("reported") or {}).get("modules") or {}).get("modules", {}).get(
        "web"
    ) or {}
    return module.get("version"), module.get("state"), (device.get("sync") or {}).get("status")


@dataclass
class CaseResult:
    point: str
    crashed: bool
    served: str | None
    reported: tuple[str | None, str | None, str | None]


def run_case(fleet: Fleet, case: str, point: str, *, bad_update: bool = False) -> CaseResult:
    """v1 (or v2) healthy -> agent armed to die at `point` -> v2 (or bad v3) -> restart -> check."""
    hub, port = fleet.hub, fleet.port
    start, target = ("2.0.0", "3.0.0") if bad_update else ("1.0.0", "2.0.0")
    manifest = fleet.root / f"case-{case}.yaml"
    agent = AgentProcess(
        fleet.root / f"node-{case}", hub, f"node-{case}", hub.create_claim(labels=f"case={case}")
    )
    agent.start()
    try:
        agent.wait_enrolled()
        manifest.write_text(_deployment(case, start))
        hub.cli("apply", "-f", str(manifest))
        wait_until(
            lambda: (
                _served(port) == start and hub.device(agent.name)["sync"]["status"] == "in-sync"
            ),
            60,
            f"{start} healthy",
        )
        agent.stop()
        agent.env = {CRASH_ENV: point}
        agent.start()
        agent.wait_enrolled()
        manifest.write_text(_deployment(case, target))
        hub.cli("apply", "-f", str(manifest))
        assert agent.proc is not None
        try:
            agent.proc.wait(timeout=60)
            crashed = agent.proc.returncode == -9
        except Exception:
            crashed = False
        agent.stop()
        agent.env = {}
        agent.start()
        expected = start if bad_update else target
        wait_until(lambda: _served(port) == expected, 90, f"{expected} served after restart")
        final_sync = "error" if bad_update else "in-sync"
        wait_until(
            lambda: _reported(hub, agent.name) == (expected, "healthy", final_sync),
            60,
            "truthful report",
        )
        return CaseResult(point, crashed, _served(port), _reported(hub, agent.name))
    finally:
        agent.stop()
