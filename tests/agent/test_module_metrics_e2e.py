"""Canary analysis on a series a module exposes (issue #17): a real agent runs
a real module that serves Prometheus text on /metrics; the agent scrapes the
series its module file chooses and reports it; the hub's analysis gate
judges a wave on `module:web:http_errors_total`, a counter, as a rate.

The node is alone at site=real, so the stratified first wave always holds
it; fake devices at site=fake fill the cohorts (a module's port is fixed in
its release, so one host runs one real node). Release 2.0.0 answers errors
fast and is rolled back in wave 1 naming the series; 2.0.1 passes and
completes. Without the real node's series wave 1 would have one canary with
data, under minSamples: inconclusive, never a fail.
"""

import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.device import FACTS, TestDevice, enroll_device
from tests.support.processes import AgentProcess, HubProcess, free_port, wait_until

SERIES = "module:web:http_errors_total"
# Errors per second each release's module counts (its env): 2.0.0 is the bad one.
RATES = {"1.0.0": 0.01, "2.0.0": 2.0, "2.0.1": 0.01}

SERVER = textwrap.dedent("""\
    import http.server, os, time

    PORT = int(os.environ["PORT"])
    RATE = float(os.environ["ERRORS_PER_S"])
    STARTED = time.monotonic()


    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/metrics":
                errors = RATE * (time.monotonic() - STARTED)
                body = (
                    "# HELP http_errors Errors answered.\\n# TYPE http_errors counter\\n"
                    f'http_errors_total{{code="500"}} {errors * 0.75}\\n'
                    f'http_errors_total{{code="503"}} {errors * 0.25}\\n'
                    "# TYPE queue_depth gauge\\nqueue_depth 3\\n"
                ).encode()
            else:
                body = b"ok"
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass


    http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
    """)


def _release(hub: HubProcess, tmp_path: Path, key: Path, version: str, port: int) -> None:
    source = tmp_path / f"src-{version}"
    source.mkdir()
    (source / "server.py").write_text(SERVER)
    (source / "fogline-module.yaml").write_text(
        textwrap.dedent(f"""\
        name: web
        version: {version}
        command: [python3, server.py]
        env: {{PORT: "{port}", ERRORS_PER_S: "{RATES[version]}"}}
        health: {{http: "http://127.0.0.1:{port}/healthz", timeout: 2s, interval: 500ms}}
        startGrace: 500ms
        stopGrace: 2s
        metrics: {{port: {port}, path: /metrics, series: [http_errors_total]}}
        architectures: [any]
        """)
    )
    archive = tmp_path / f"web-{version}.tar.zst"
    hub.cli("release", "build", str(source), "-o", str(archive))
    hub.cli("release", "sign", str(archive), "--key", str(key))
    hub.cli("release", "push", str(archive))


def _deployment(version: str, *, rollout: bool) -> str:
    analysis = textwrap.indent(
        textwrap.dedent(f"""\
        rollout:
          waves: [20%, 100%]
          bake: 6s
          waveTimeout: 90s
          onFailure: rollback
          analysis:
            metrics:
              - {{metric: "{SERIES}", tolerance: 1000/h}}
            minSamples: 2
            confidence: 90%
            inconclusive: fail
        """),
        "  ",
    )
    return textwrap.dedent(f"""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {{name: web}}
        spec:
          selector:
            matchExpressions: [{{key: site, operator: In, values: [real, fake]}}]
          modules:
            - name: web
              release: web@{version}
        """) + (analysis if rollout else "")


class FakeNodes:
    """Devices at site=fake that apply whatever they are served at once and
    report its module's error counter growing at that release's rate."""

    def __init__(self, devices: list[TestDevice]) -> None:
        self.devices = devices
        self.since: dict[str, tuple[str, float]] = {}

    def pump(self) -> None:
        for device in self.devices:
            with device.client() as client:
                served = client.get("/v1/desired").json()
            revision = served["revision"]
            modules = served["document"].get("modules") or []
            version = modules[0]["version"] if modules else None
            before = self.since.get(device.name)
            if before is None or before[0] != revision:
                self.since[device.name] = (revision, time.monotonic())
            age_s = time.monotonic() - self.since[device.name][1]
            health: dict[str, Any] = {"cpu_percent": 5.0}
            body: dict[str, Any] = {
                "facts": FACTS,
                "labels": {},
                "applied": {"revision": revision, "ok": True, "error": None},
                "health": health,
            }
            if version is not None:
                errors = RATES[version] * age_s
                web = {"state": "healthy", "metrics": {"http_errors_total": errors}}
                health["modules"] = {"web": web}
                body["modules"] = {"modules": {"web": {"state": "healthy", "version": version}}}
            with device.client() as client:
                response = client.post("/v1/report", json=body)
            assert response.status_code == 200, response.text


def _rollout(hub: HubProcess) -> dict[str, Any]:
    with hub.client() as client:
        response = client.get("/v1/rollouts/web")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _run_until_stopped(hub: HubProcess, fakes: FakeNodes) -> dict[str, Any]:
    state: dict[str, Any] = {}

    def stopped() -> bool:
        fakes.pump()
        state.update(_rollout(hub))
        return state["state"] in ("paused", "completed", "rolled-back")

    wait_until(stopped, 150, "the rollout stopped", interval_s=0.5)
    return state


def _running(hub: HubProcess, version: str) -> bool:
    reported = hub.device("real-1").get("reported") or {}
    web = ((reported.get("modules") or {}).get("modules") or {}).get("web") or {}
    return web.get("version") == version and web.get("state") == "healthy"


@pytest.mark.timeout(420)
def test_a_wave_is_judged_on_a_series_the_module_exposes_fail_then_pass(
    hub: HubProcess, tmp_path: Path
) -> None:
    key = hub.trust_new_key(tmp_path / "keys")
    port = free_port()
    for version in RATES:
        _release(hub, tmp_path, key, version, port)
    claim = hub.create_claim(labels="site=fake", max_uses=7)
    fakes = FakeNodes([enroll_device(hub, claim, f"fake-{i}", tmp_path) for i in range(7)])
    agent = AgentProcess(tmp_path / "node", hub, "real-1", hub.create_claim(labels="site=real"))
    agent.start()
    manifest = tmp_path / "web.yaml"
    try:
        agent.wait_enrolled()
        manifest.write_text(_deployment("1.0.0", rollout=False))
        hub.cli("apply", "-f", str(manifest))
        wait_until(lambda: _running(hub, "1.0.0"), 90, "the node running web 1.0.0")

        # The agent scrapes its module's endpoint and reports the chosen
        # series only (queue_depth is served but not chosen), summed over codes.
        def scraped() -> dict[str, float] | None:
            health = hub.device("real-1")["reported"].get("health") or {}
            metrics = ((health.get("modules") or {}).get("web") or {}).get("metrics")
            return metrics if metrics and metrics.get("http_errors_total", 0) > 0 else None

        metrics = wait_until(scraped, 30, "the module's series in the node's health")
        assert set(metrics) == {"http_errors_total"}
        fakes.pump()

        # 2.0.0 counts 2 errors a second: wave 1 fails on the series, rolled back.
        manifest.write_text(_deployment("2.0.0", rollout=True))
        hub.cli("apply", "-f", str(manifest))
        failed = _run_until_stopped(hub, fakes)
        assert failed["state"] == "rolled-back", failed
        assert f"canary analysis fail: {SERIES}: increase beyond tolerance" in failed["reason"]
        [wave] = failed["analysis"]["waves"]
        [verdict] = wave["metrics"]
        assert (verdict["metric"], verdict["outcome"]) == (SERIES, "fail"), verdict
        # Two canaries with data: the real node and one fake; six controls.
        assert (verdict["canaries"], verdict["controls"]) == (2, 6), verdict
        assert verdict["canary_median"] > 3000  # errors per hour; the control's ~36
        assert verdict["control_median"] < 1000
        assert verdict["unit"] == "/h"
        wait_until(lambda: _running(hub, "1.0.0"), 90, "the node back on web 1.0.0")

        # 2.0.1 keeps the old rate: the same wave passes and the rollout completes.
        manifest.write_text(_deployment("2.0.1", rollout=True))
        hub.cli("apply", "-f", str(manifest))
        passed = _run_until_stopped(hub, fakes)
        assert passed["state"] == "completed", passed
        [wave] = passed["analysis"]["waves"]
        [verdict] = wave["metrics"]
        assert (verdict["outcome"], verdict["canaries"], verdict["controls"]) == ("pass", 2, 6)
        wait_until(lambda: _running(hub, "2.0.1"), 90, "the node on web 2.0.1")
        shown = hub.cli("rollout", "status", "web", "-o", "table").stdout
        assert SERIES in shown
    finally:
        agent.stop()
