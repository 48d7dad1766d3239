"""The edge data plane end to end: sensors -> Mosquitto -> agent -> actuator and hub."""

import json
import textwrap
import threading

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.processes import AgentProcess, wait_until

ALARM = textwrap.dedent("""\
    apiVersion: fogline.dev/v1
    kind: Deployment
    metadata: {name: press-guard}
    spec:
      selector: {}
      pipelines:
        - name: guard
          source: {mqtt: "sensors/{device}/{metric}", qos: 1}
          steps:
            - {id: temps, filter: "metric == 'temp'"}
            - id: hot
              detect: {type: threshold, field: value, max: 80}
          outputs:
            - from: hot
              when: "anomaly"
              action: {mqtt: {topic: "actuators/{device}/cmd", payload: {cmd: stop, reading: "{value}"}, qos: 1}}
            - {from: hot, when: "anomaly", uplink: {stream: alarms, priority: 9, ttl: 1d}}
        - name: ingest-summary
          source: {http: {}}
          steps:
            - id: per-second
              window: {type: tumbling, size: 1s, time: processing, key: [line],
                       aggregate: {n: "count()", mean: "mean(value)"}}
          outputs:
            - {uplink: {stream: line-1s, priority: 5, ttl: 1d}}
    """)


class Listener:
    def __init__(self, broker, topic: str) -> None:
        self.messages: list[tuple[str, dict]] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, 1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = lambda _c, _u, m: self.messages.append(
            (m.topic, json.loads(m.payload))
        )
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert self.ready.wait(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _publish(broker, topic: str, payload: dict) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def _telemetry(hub, stream: str) -> list[dict]:
    return json.loads(hub.cli("telemetry", "query", "--stream", stream, "-o", "json").stdout)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_sensor_to_actuator_and_alarms_to_the_hub(hub, broker, tmp_path, protocol):
    agent = AgentProcess(
        tmp_path / "edge",
        hub,
        "press-7",
        hub.create_claim(),
        extra_args=["--mqtt", broker.url, "--mqtt-protocol", protocol],
    )
    agent.start()
    listener = Listener(broker, "actuators/+/cmd")
    try:
        agent.wait_enrolled()
        manifest = tmp_path / "guard.yaml"
        manifest.write_text(ALARM)
        hub.cli("apply", "-f", str(manifest))
        wait_until(
            lambda: (
                "dataplane.configured" in agent.log_text() and "mqtt.connected" in agent.log_text()
            ),
            15,
            "pipelines running",
        )

        def received() -> float:
            _publish(broker, "sensors/m1/temp", {"value": 21.0})  # normal: no command
            return agent.metric("fogline_agent_dataplane_total", kind="mqtt_received")

        wait_until(received, 10, "the agent subscribed: a reading received", interval_s=0.1)
        _publish(broker, "sensors/m1/humidity", {"value": 95.0})  # filtered out
        _publish(broker, "sensors/m1/temp", {"value": 95.5})
        wait_until(lambda: listener.messages, 10, "actuator command")
        assert listener.messages == [("actuators/m1/cmd", {"cmd": "stop", "reading": 95.5})]
        alarms = wait_until(lambda: _telemetry(hub, "alarms"), 15, "alarm at the hub")
        assert len(alarms) == 1
        assert alarms[0]["device"] == "press-7" and alarms[0]["payload"]["value"] == 95.5
        assert alarms[0]["payload"]["anomaly"] is True
    finally:
        listener.close()
        agent.stop()


def test_http_ingest_windows_and_forwards_summaries(hub, broker, tmp_path):
    agent = AgentProcess(
        tmp_path / "edge", hub, "line-1", hub.create_claim(), extra_args=["--mqtt", broker.url]
    )
    agent.start()
    try:
        agent.wait_enrolled()
        manifest = tmp_path / "guard.yaml"
        manifest.write_text(ALARM)
        hub.cli("apply", "-f", str(manifest))
        wait_until(lambda: "dataplane.configured" in agent.log_text(), 15, "pipelines running")
        port = int((agent.data_dir / "local-port").read_text())
        lines = "\n".join(json.dumps({"line": "L1", "value": v}) for v in (1, 2, 3, 6))
        response = httpx.post(
            f"http://127.0.0.1:{port}/ingest",
            content=lines,
            headers={"content-type": "application/x-ndjson"},
        )
        assert response.status_code == 202 and response.json()["accepted"] == 4
        rows = wait_until(lambda: _telemetry(hub, "line-1s"), 15, "summary at the hub")
        total = sum(r["payload"]["n"] for r in rows)
        assert total == 4
        assert rows[0]["payload"]["line"] == "L1"
        # A bad line of a batch is named by its number; the good lines are taken.
        batch = b'{"line": "L2", "value": 1}\nnot json\n{"line": "L2", "value": 2}\n'
        partial = httpx.post(f"http://127.0.0.1:{port}/ingest", content=batch)
        assert partial.status_code == 202, partial.text
        answer = partial.json()
        assert (answer["accepted"], answer["rejected"]) == (2, 1)
        [error] = answer["errors"]
        assert error["line"] == 2 and error["reason"].startswith("not JSON")
        # A bare value is the record {"value": ...}, as on MQTT.
        bare = httpx.post(f"http://127.0.0.1:{port}/ingest", content=b"21.5")
        assert bare.status_code == 202 and bare.json()["accepted"] == 1, bare.text

        def counted() -> dict:
            counts: dict = {}
            for row in _telemetry(hub, "line-1s"):
                line = row["payload"].get("line")
                counts[line] = counts.get(line, 0) + row["payload"]["n"]
            return counts

        wait_until(lambda: counted() == {"L1": 4, "L2": 2, None: 1}, 15, "every good record")
        assert any(r["payload"]["mean"] == 21.5 for r in _telemetry(hub, "line-1s"))
        bad = httpx.post(f"http://127.0.0.1:{port}/ingest", content=b"[1,2]")
        assert bad.status_code == 400 and "NDJSON" in bad.json()["message"]
        nothing = httpx.post(f"http://127.0.0.1:{port}/ingest", content=b"nope\n[1]\n")
        assert nothing.status_code == 400 and nothing.json()["rejected"] == 2
        huge = httpx.post(
            f"http://127.0.0.1:{port}/ingest", content=b"{" + b" " * (5 * 1024 * 1024) + b"}"
        )
        assert huge.status_code == 413
    finally:
        agent.stop()


def test_pipeline_needing_mqtt_on_an_agent_without_a_broker_reports_an_error(hub, tmp_path):
    agent = AgentProcess(tmp_path / "edge", hub, "no-broker", hub.create_claim())
    agent.start()
    try:
        agent.wait_enrolled()
        manifest = tmp_path / "guard.yaml"
        manifest.write_text(ALARM)
        hub.cli("apply", "-f", str(manifest))
        sync = wait_until(
            lambda: (s := hub.device("no-broker")["sync"]) and s["status"] == "error" and s,
            15,
            "error reported",
        )
        assert "--mqtt" in sync["error"]
    finally:
        agent.stop()


COUNTED = textwrap.dedent("""\
    apiVersion: fogline.dev/v1
    kind: Deployment
    metadata: {name: counted}
    spec:
      selector: {}
      pipelines:
        - name: counted
          source: {http: {}}
          steps:
            - {id: big, filter: "value > 10"}
            - {id: once, dedupe: {key: [id], window: 1m}}
          outputs:
            - {uplink: {stream: big, priority: 5, ttl: 1d}}
    """)


def test_pipeline_errors_and_drops_reach_the_hub_in_the_nodes_health(hub, tmp_path):
    """A record a step cannot evaluate is an error, a repeat the dedupe step
    sheds a drop; a record the filter turns down is neither. The node's
    health report carries both counters, and the hub's series shows them."""
    agent = AgentProcess(tmp_path / "edge", hub, "counted-1", hub.create_claim())
    agent.start()
    try:
        agent.wait_enrolled()
        manifest = tmp_path / "counted.yaml"
        manifest.write_text(COUNTED)
        hub.cli("apply", "-f", str(manifest))
        wait_until(lambda: "dataplane.configured" in agent.log_text(), 15, "pipelines running")
        port = int((agent.data_dir / "local-port").read_text())
        records = [
            {"id": 1, "value": 20},
            {"id": 1, "value": 30},  # a repeat: dropped
            {"id": 2, "value": "hot"},  # cannot be compared: an error
            {"id": 3, "value": 5},  # filtered out: neither
        ]
        response = httpx.post(
            f"http://127.0.0.1:{port}/ingest",
            content="\n".join(json.dumps(r) for r in records),
            headers={"content-type": "application/x-ndjson"},
        )
        assert response.status_code == 202 and response.json()["accepted"] == 4, response.text

        def counted() -> tuple[int, int] | None:
            health = hub.device("counted-1").get("reported", {}).get("health") or {}
            found = (health.get("pipeline_errors"), health.get("pipeline_dropped"))
            return found if found == (1, 1) else None

        wait_until(counted, 30, "the pipeline counters in the node's health")
        with hub.client() as client:
            series = client.get("/v1/devices/counted-1/health", params={"since": "1h"}).json()
        assert series["points"][-1]["pipeline_errors"] == 1
        assert series["points"][-1]["pipeline_dropped"] == 1
    finally:
        agent.stop()
