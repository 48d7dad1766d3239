"""Every file in examples/ works from a clean clone (issue #19).

The manifests pass the validation `fogline plan` runs, and a real hub plans
them; the module file is valid, `fogline release build` builds the module
(reproducibly), and the module itself runs: its health endpoint answers and
its readings reach an ingest. The README's walk-through applies
examples/fleet/ to a real node (tests/test_readme_quickstart.py).
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fogline.artifact import load_module_spec
from fogline.hub._validators import default_validators
from fogline.manifest import load_manifests, read_sources
from tests.support.processes import ENV, HubProcess, fogline_cmd, free_port, wait_until

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
STEP_KINDS = ("filter", "map", "window", "detect", "infer", "dedupe", "sample")


def test_the_manifests_pass_plan_validation() -> None:
    fleet = load_manifests(read_sources(str(EXAMPLES / "fleet")), validators=default_validators())
    assert [d.name for d in fleet.deployments] == ["plant-7", "thermo"]
    assert [c.name for c in fleet.claims] == ["plant-7-line-b"]
    pipelines = load_manifests(
        read_sources(str(EXAMPLES / "pipelines")), validators=default_validators()
    )
    specs = [p for d in pipelines.deployments for p in d.pipelines]
    # One example at least of every step kind, window type, detector and action.
    steps = [step for spec in specs for step in spec["steps"]]
    assert {kind for step in steps for kind in STEP_KINDS if kind in step} == set(STEP_KINDS)
    windows = {step["window"]["type"] for step in steps if "window" in step}
    detectors = {step["detect"]["type"] for step in steps if "detect" in step}
    actions = {
        kind
        for spec in specs
        for output in spec["outputs"]
        for kind in (output.get("action") or {"uplink": 1})
    }
    assert windows == {"tumbling", "hopping"}
    assert detectors == {"threshold", "zscore", "halfspacetrees"}
    assert actions == {"mqtt", "webhook", "uplink"}


def test_a_hub_plans_the_pipelines_and_asks_for_the_fleets_release(
    shared_hub: HubProcess,
) -> None:
    # infer.yaml delivers its model as a release, so it plans only where that
    # release was pushed: the others plan on an empty hub.
    files = sorted((EXAMPLES / "pipelines").glob("*.yaml"))
    plain = [path for path in files if path.stem != "infer"]
    args = [arg for path in plain for arg in ("-f", str(path))]
    planned = shared_hub.cli("plan", *args, check=False)
    assert planned.returncode == 2, planned.stderr  # 2: changes pending
    for path in plain:
        assert f"deployment/example-{path.stem}  create" in planned.stdout, path.name
    infer = shared_hub.cli("plan", "-f", str(EXAMPLES / "pipelines" / "infer.yaml"), check=False)
    assert infer.returncode == 1
    assert "pump-wear@1.0.0" in infer.stderr and "has not been pushed" in infer.stderr
    # examples/fleet/ pins a release: a hub without it says which, and where.
    fleet = shared_hub.cli("plan", "-f", str(EXAMPLES / "fleet") + "/", check=False)
    assert fleet.returncode == 1
    assert "thermo.yaml" in fleet.stderr and "thermo-filter@1.0.0" in fleet.stderr


def test_the_module_builds_reproducibly(tmp_path: Path) -> None:
    spec = load_module_spec(EXAMPLES / "thermo-filter" / "fogline-module.yaml")
    assert (spec.name, str(spec.version)) == ("thermo-filter", "1.0.0")
    digests = []
    for name in ("a", "b"):
        out = str(tmp_path / f"{name}.tar.zst")
        built = subprocess.run(
            [*fogline_cmd(), "release", "build", str(EXAMPLES / "thermo-filter"), "-o", out],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=60,
        )
        assert built.returncode == 0, built.stderr
        digests.append(built.stdout.strip())
    assert digests[0] == digests[1] and digests[0].startswith("sha256:")


@pytest.fixture
def ingest() -> Iterator[tuple[str, list[dict]]]:
    """A stand-in for the agent's ingest: answers 202 and keeps what it got."""
    received: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(202)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/ingest", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_the_module_answers_its_health_check_and_posts_readings(
    tmp_path: Path, ingest: tuple[str, list[dict]]
) -> None:
    url, received = ingest
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"sensor": "t9", "interval": 0.1, "ingest": url}))
    port = free_port()
    module = subprocess.Popen(
        [sys.executable, "thermo_filter.py"],
        cwd=EXAMPLES / "thermo-filter",
        env={**os.environ, "PORT": str(port), "FOGLINE_CONFIG": str(config)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                assert module.poll() is None, module.communicate()
                return False

        wait_until(healthy, 15, "the module's /healthz")
        wait_until(lambda: len(received) >= 3, 15, "readings at the ingest")
        first = received[0]
        assert first["sensor"] == "t9" and set(first) == {"sensor", "raw", "value", "ts"}
        latest = httpx.get(f"http://127.0.0.1:{port}/", timeout=2).json()
        assert latest["config"]["sensor"] == "t9" and latest["sent"] >= 3
    finally:
        module.terminate()
        module.communicate(timeout=10)  # waits, and closes its pipes
