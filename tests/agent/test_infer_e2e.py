"""ONNX inference on a real node: real hub, real agent, real Mosquitto.

A tiny model made here is built, signed and pushed as a `kind: model` release;
a deployment delivers it and runs it in an `infer` step. A reading in over
MQTT gives a score out on MQTT and at the hub; a second model version rolls
out and the scores change, without an agent restart, while the window after
the infer step keeps counting across the swap.
"""

from __future__ import annotations

import json
import math
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.agent.test_dataplane_e2e import Listener
from tests.support.onnx_models import save_linear_model
from tests.support.processes import ENV, AgentProcess, wait_until

pytest.importorskip("onnx")

TOPIC = "infer-e2e"  # this test's own topics on the module's shared broker


def push_model(
    hub: Any, tmp_path: Path, key: Path, version: str, weight: float, bias: float
) -> None:
    """Build, sign and push `scorer` VERSION: a model release holding y = weight * x + bias."""
    source = tmp_path / f"scorer-{version}"
    source.mkdir()
    (source / "fogline-module.yaml").write_text(
        f"name: scorer\nversion: {version}\nkind: model\narchitectures: [any]\n"
    )
    save_linear_model(source / "model.onnx", weights=[weight], bias=bias)
    archive = tmp_path / f"scorer-{version}.tar.zst"
    hub.cli("release", "build", str(source), "-o", str(archive))
    hub.cli("release", "sign", str(archive), "--key", str(key))
    hub.cli("release", "push", str(archive))


def trusted_key(hub: Any, tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    created = hub.cli("keys", "create", "models", "--dir", str(keys), "--modules", "scorer")
    hub.cli("apply", "-f", "-", input_text=created.stdout)
    return keys / "models.key"


def deployment(version: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {{name: scoring}}
        spec:
          selector: {{}}
          modules:
            - {{name: scorer, release: scorer@{version}}}
          pipelines:
            - name: score
              source: {{mqtt: "{TOPIC}/{{device}}/reading", qos: 1}}
              timestamp: ts
              steps:
                - id: model
                  infer: {{model: {{release: scorer@{version}, file: model.onnx}}, inputs: [value], output: score}}
                - id: per-10s
                  window: {{type: tumbling, size: 10s, key: [device],
                           aggregate: {{n: "count()", total: "sum(score)"}}}}
              outputs:
                - from: model
                  action: {{mqtt: {{topic: "{TOPIC}/{{device}}/score", payload: {{score: "{{score}}"}}, qos: 1}}}}
                - {{from: model, uplink: {{stream: scores, priority: 5, ttl: 1d}}}}
                - {{from: per-10s, uplink: {{stream: score-windows, priority: 5, ttl: 1d}}}}
            - name: raw
              source: {{http: {{}}}}
              outputs:
                - {{uplink: {{stream: raw, priority: 5, ttl: 1d}}}}
        """)


class Sensor:
    def __init__(self, broker: Any) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def send(self, payload: dict[str, Any] | None, *, retain: bool = False) -> None:
        body = b"" if payload is None else json.dumps(payload).encode()
        topic = f"{TOPIC}/s1/reading"
        self.client.publish(topic, body, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def telemetry(hub: Any, stream: str) -> list[dict[str, Any]]:
    rows = json.loads(hub.cli("telemetry", "query", "--stream", stream, "-o", "json").stdout)
    return [row["payload"] for row in sorted(rows, key=lambda r: r["seq"])]


def in_sync(hub: Any, name: str, *, not_revision: str | None = None) -> str | None:
    sync = hub.device(name)["sync"]
    if sync["status"] != "in-sync" or sync["reported_revision"] == not_revision:
        return None
    return str(sync["reported_revision"])


def model_state(hub: Any, name: str) -> Any:
    modules = (hub.device(name).get("reported") or {}).get("modules") or {}
    return (modules.get("modules") or {}).get("scorer")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_model_release_scores_readings_and_a_new_version_swaps_in_without_a_restart(
    hub: Any, broker: Any, tmp_path: Path
) -> None:
    key = trusted_key(hub, tmp_path)
    push_model(hub, tmp_path, key, "1.0.0", weight=2.0, bias=1.0)  # y = 2x + 1
    push_model(hub, tmp_path, key, "2.0.0", weight=10.0, bias=0.0)  # y = 10x
    agent = AgentProcess(
        tmp_path / "edge", hub, "scorer-1", hub.create_claim(), extra_args=["--mqtt", broker.url]
    )
    agent.start()
    scores = Listener(broker, f"{TOPIC}/+/score")
    sensor = Sensor(broker)
    manifest = tmp_path / "scoring.yaml"
    t0 = math.floor(time.time() / 10) * 10 - 100  # a window boundary, in the past
    try:
        agent.wait_enrolled()
        assert agent.proc is not None
        pid = agent.proc.pid
        manifest.write_text(deployment("1.0.0"))
        hub.cli("apply", "-f", str(manifest))
        first = wait_until(lambda: in_sync(hub, "scorer-1"), 60, "model 1.0.0 deployed")
        assert model_state(hub, "scorer-1")["version"] == "1.0.0"
        wait_until(lambda: "mqtt.connected" in agent.log_text(), 15, "agent on the broker")

        # Retained: it reaches the pipeline whether or not its subscription is
        # in place yet; cleared once scored, so no resubscription sees it again.
        sensor.send({"value": 1, "ts": t0 + 1}, retain=True)
        wait_until(lambda: len(scores.messages) == 1, 15, "first score")
        sensor.send(None, retain=True)
        sensor.send({"value": 2, "ts": t0 + 2})
        wait_until(lambda: len(scores.messages) == 2, 15, "second score")

        manifest.write_text(deployment("2.0.0"))
        hub.cli("apply", "-f", str(manifest))
        wait_until(lambda: in_sync(hub, "scorer-1", not_revision=first), 60, "model 2.0.0")
        assert model_state(hub, "scorer-1")["version"] == "2.0.0"
        sensor.send({"value": 1, "ts": t0 + 3})
        wait_until(lambda: len(scores.messages) == 3, 15, "score by 2.0.0")
        sensor.send({"value": 0, "ts": t0 + 15})  # closes the window [t0, t0 + 10)
        wait_until(lambda: len(scores.messages) == 4, 15, "last score")

        assert [m[1]["score"] for m in scores.messages] == [3.0, 5.0, 10.0, 0.0]
        assert {m[0] for m in scores.messages} == {f"{TOPIC}/s1/score"}
        uplinked = wait_until(lambda: (r := telemetry(hub, "scores")) and len(r) == 4 and r, 15, "")
        assert [(r["value"], r["score"]) for r in uplinked] == [
            (1, 3.0),
            (2, 5.0),
            (1, 10.0),
            (0, 0.0),
        ]
        (window,) = wait_until(lambda: telemetry(hub, "score-windows"), 15, "window at the hub")
        # One window over both models: its state survived the swap.
        assert (window["device"], window["n"], window["total"]) == ("s1", 3, 18.0)
        assert agent.proc is not None and agent.proc.pid == pid and agent.proc.poll() is None
        assert "scorer@2.0.0/model.onnx" in agent.log_text()
    finally:
        sensor.close()
        scores.close()
        agent.stop()


@pytest.mark.timeout(180)
def test_an_agent_without_onnxruntime_reports_that_pipeline_and_runs_the_others(
    hub: Any, tmp_path: Path
) -> None:
    """onnxruntime is an optional dependency (the `ml` extra): without it, only
    the pipeline with an infer step is down, and the hub says why."""
    key = trusted_key(hub, tmp_path)
    push_model(hub, tmp_path, key, "1.0.0", weight=2.0, bias=1.0)
    hidden = tmp_path / "no-onnxruntime" / "onnxruntime"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ImportError("onnxruntime is hidden by this test")\n')
    path = ":".join(p for p in (str(hidden.parent), ENV.get("PYTHONPATH")) if p)
    agent = AgentProcess(
        tmp_path / "edge",
        hub,
        "no-ml",
        hub.create_claim(),
        extra_args=["--mqtt", "mqtt://127.0.0.1:9"],  # the infer pipeline's source; never reached
        env={"PYTHONPATH": path},
    )
    agent.start()
    manifest = tmp_path / "scoring.yaml"
    try:
        agent.wait_enrolled()
        manifest.write_text(deployment("1.0.0"))
        hub.cli("apply", "-f", str(manifest))
        sync = wait_until(
            lambda: (s := hub.device("no-ml")["sync"]) and s["status"] == "error" and s,
            60,
            "the error reported",
        )
        assert sync["error"] == (
            "pipeline 'score' is not running: step 'model': model 'scorer@1.0.0/model.onnx': "
            "onnxruntime is not installed (pip install 'fogline[ml]')"
        )
        port = int((agent.data_dir / "local-port").read_text())
        response = httpx.post(f"http://127.0.0.1:{port}/ingest", json={"value": 7})
        assert response.status_code == 202 and response.json()["pipelines"] == 1
        rows = wait_until(lambda: telemetry(hub, "raw"), 15, "the other pipeline's record")
        assert rows == [{"value": 7}]
    finally:
        agent.stop()
