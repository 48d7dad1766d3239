"""Sensors to the node (issue #14): the HTTP ingest takes only requests with a
token the deployment declares, and the node's Mosquitto only sensors over
TLS with the accounts the agent wrote into its password file. Real hub,
agent and Mosquitto processes on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import subprocess
import textwrap
import threading
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fogline.security import hash_sensor_password
from tests.support.broker import Broker, start_broker
from tests.support.processes import ENV, AgentProcess, HubProcess, fogline_cmd, wait_until
from tests.support.tls_files import TlsFiles, make_server_tls

INGEST_TOKEN = "ingest-9f3c1d7e5b2a4c60"
SENSOR_PASSWORD = "press-7-s3cret-41d2"
AGENT_PASSWORD = "agent-pw-0c7e2f19b4"


def _deployment(name: str, selector: str, sensors: str, pipeline: str) -> str:
    return (
        textwrap.dedent(f"""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {{name: {name}}}
        spec:
          selector: {{matchLabels: {{test: {selector}}}}}
          sensors:
        """)
        + textwrap.indent(textwrap.dedent(sensors), "    ")
        + "  pipelines:\n"
        + textwrap.indent(textwrap.dedent(pipeline), "    ")
    )


def _apply(hub: HubProcess, tmp_path: Path, text: str) -> None:
    path = tmp_path / "deployment.yaml"
    path.write_text(text)
    hub.cli("apply", "-f", str(path))


def _telemetry(hub: HubProcess, stream: str) -> list[dict]:
    return json.loads(hub.cli("telemetry", "query", "--stream", stream, "-o", "json").stdout)


def _ingest(port: int, body: dict, token: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.post(f"http://127.0.0.1:{port}/ingest", json=body, headers=headers, timeout=10)


HTTP_PIPELINE = """\
- name: ingest-all
  source: {http: {}}
  outputs:
    - {uplink: {stream: STREAM, priority: 5, ttl: 1d}}
"""


def test_ingest_without_or_with_a_wrong_token_is_401_and_only_the_right_token_reaches_the_hub(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    digest = hashlib.sha256(INGEST_TOKEN.encode()).hexdigest()
    sensors = f"ingest:\n  tokens:\n    - {{name: line-1, sha256: {digest}}}\n"
    _apply(
        shared_hub,
        tmp_path,
        _deployment(
            "ingest-token", "ingest-token", sensors, HTTP_PIPELINE.replace("STREAM", "tok")
        ),
    )
    agent = AgentProcess(
        tmp_path / "edge",
        shared_hub,
        "ingest-token",
        shared_hub.create_claim(labels="test=ingest-token"),
    )
    agent.start()
    try:
        agent.wait_enrolled()
        wait_until(lambda: "dataplane.configured" in agent.log_text(), 15, "pipelines running")
        port = int((agent.data_dir / "local-port").read_text())
        missing = _ingest(port, {"value": 666})
        wrong = _ingest(port, {"value": 667}, token=INGEST_TOKEN + "x")
        not_bearer = httpx.post(
            f"http://127.0.0.1:{port}/ingest",
            json={"value": 668},
            headers={"authorization": f"Basic {INGEST_TOKEN}"},
            timeout=10,
        )
        for refused in (missing, wrong, not_bearer):
            assert refused.status_code == 401, refused.text
            assert refused.json()["error"] == "unauthorized"
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert INGEST_TOKEN not in refused.text
        right = _ingest(port, {"value": 21.5}, token=INGEST_TOKEN)
        assert right.status_code == 202, right.text
        rows = wait_until(
            lambda: _telemetry(shared_hub, "tok"), 15, "the accepted record at the hub"
        )
        # The refused records reached no pipeline: only the accepted one is here,
        # and the agent counted nothing else coming in.
        assert [r["payload"]["value"] for r in rows] == [21.5]
        assert agent.metric("fogline_agent_dataplane_total", kind="records_in") == 1
        assert agent.metric("fogline_agent_dataplane_total", kind="ingest_unauthorized") == 3
        agent.stop()
        assert INGEST_TOKEN not in agent.log_path.read_text()
    finally:
        agent.stop()


def test_an_ingest_reachable_from_the_network_without_a_declared_token_takes_nothing(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    _apply(
        shared_hub,
        tmp_path,
        _deployment(
            "ingest-open",
            "ingest-open",
            "ingest: {tokens: []}\n",
            HTTP_PIPELINE.replace("STREAM", "open"),
        ),
    )
    agent = AgentProcess(
        tmp_path / "edge",
        shared_hub,
        "ingest-open",
        shared_hub.create_claim(labels="test=ingest-open"),
        # Every address: what a node that sensors reach over the LAN does.
        extra_args=["--local-host", "0.0.0.0"],
    )
    agent.start()
    try:
        agent.wait_enrolled()
        wait_until(lambda: "dataplane.configured" in agent.log_text(), 15, "pipelines running")
        port = int((agent.data_dir / "local-port").read_text())
        for token in (None, "anything"):
            refused = _ingest(port, {"value": 1}, token=token)
            assert refused.status_code == 401, refused.text
            assert "not loopback" in refused.json()["message"]
        assert agent.metric("fogline_agent_dataplane_total", kind="records_in") == 0
    finally:
        agent.stop()


# -- MQTT: TLS and per-sensor accounts the agent writes --------------------------------


def _sensor_connect(
    broker: Broker,
    tls: TlsFiles | None,
    username: str | None,
    password: str | None,
    publish: list[tuple[str, dict]] | None = None,
) -> str:
    """Connect as a sensor; the broker's answer ("Success", "Not authorized")
    or "no CONNACK". With `publish`, send those QoS 1 messages, in order, once connected."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    if tls is not None:
        client.tls_set(ca_certs=str(tls.ca))
    if username is not None:
        client.username_pw_set(username, password)
    answers: list[str] = []
    done = threading.Event()

    def on_connect(
        _c: mqtt.Client, _u: object, _f: object, reason: object, _p: object = None
    ) -> None:
        answers.append(str(reason))
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = lambda *_: done.set()
    try:
        client.connect("127.0.0.1", broker.port)
    except OSError as exc:
        return f"no CONNACK ({exc})"
    client.loop_start()
    try:
        done.wait(5)
        if publish is not None and answers == ["Success"]:
            # From this thread: paho's network thread must be free to take the PUBACKs.
            for topic, payload in publish:
                client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()
    return answers[0] if answers else "no CONNACK"


@pytest.fixture
def tls_broker(tmp_path: Path):
    """Mosquitto with only a TLS listener, no anonymous clients, and a password
    file the agent owns (empty until the agent writes it)."""
    files = make_server_tls(tmp_path / "tls")
    passwords = tmp_path / "broker" / "passwords"
    passwords.parent.mkdir(parents=True)
    passwords.write_text("")
    pid_file = tmp_path / "broker" / "mosquitto.pid"
    acl = tmp_path / "broker" / "acl"
    acl.write_text("")
    user = pwd.getpwuid(
        os.geteuid()
    ).pw_name  # root would drop to `mosquitto`, who reads nothing here
    broker = start_broker(
        tmp_path / "broker",
        settings=(
            f"cafile {files.ca}\ncertfile {files.cert}\nkeyfile {files.key}\n"
            f"allow_anonymous false\npassword_file {passwords}\nacl_file {acl}\n"
            f"pid_file {pid_file}\nuser {user}\n"
        ),
    )
    try:
        yield broker, files, passwords, acl, pid_file
    finally:
        broker.stop()


MQTT_PIPELINE = """\
- name: press
  source: {mqtt: "sensors/{device}/{metric}", qos: 1}
  outputs:
    - {uplink: {stream: press-tls, priority: 5, ttl: 1d}}
"""


def test_a_sensor_reaches_the_pipeline_only_over_tls_with_the_account_the_deployment_declares(
    shared_hub: HubProcess, tmp_path: Path, tls_broker
) -> None:
    broker, files, passwords, acl, pid_file = tls_broker
    password_hash = hash_sensor_password(SENSOR_PASSWORD, iterations=1000)
    sensors = (
        "mqtt:\n  users:\n"
        f"    - {{username: press-7, passwordHash: '{password_hash}'}}\n"
        # The agent's own user name: skipped, the agent keeps its own line.
        f"    - {{username: fogline-agent, passwordHash: '{password_hash}'}}\n"
    )
    _apply(shared_hub, tmp_path, _deployment("mqtt-tls", "mqtt-tls", sensors, MQTT_PIPELINE))
    agent_password = tmp_path / "agent-mqtt-password"
    agent_password.write_text(AGENT_PASSWORD + "\n")
    agent_password.chmod(0o600)
    agent = AgentProcess(
        tmp_path / "edge",
        shared_hub,
        "mqtt-tls",
        shared_hub.create_claim(labels="test=mqtt-tls"),
        extra_args=[
            "--mqtt",
            f"mqtts://127.0.0.1:{broker.port}",
            "--mqtt-ca",
            str(files.ca),
            "--mqtt-username",
            "fogline-agent",
            "--mqtt-password-file",
            str(agent_password),
            "--sensor-password-file",
            str(passwords),
            "--sensor-acl-file",
            str(acl),
            "--broker-pid-file",
            str(pid_file),
        ],
    )
    agent.start()
    try:
        agent.wait_enrolled()
        # The agent wrote its own account and the sensor's, and Mosquitto took
        # them: the agent is connected over TLS and the sensor gets in.
        wait_until(lambda: "mqtt.connected" in agent.log_text(), 30, "the agent on its TLS broker")
        lines = passwords.read_text().splitlines()
        assert [line.split(":")[0] for line in lines] == ["fogline-agent", "press-7"]
        assert AGENT_PASSWORD not in passwords.read_text()
        assert oct(passwords.stat().st_mode & 0o777) == oct(0o640)

        def delivered() -> list[dict]:
            answer = _sensor_connect(
                broker,
                files,
                "press-7",
                SENSOR_PASSWORD,
                [("sensors/press-7/temp", {"value": 42.0})],
            )
            assert answer in ("Success", "Not authorized"), answer  # not yet reloaded: retry
            return _telemetry(shared_hub, "press-tls")

        rows = wait_until(delivered, 30, "the sensor's reading at the hub", interval_s=0.5)
        assert rows[0]["payload"]["value"] == 42.0 and rows[0]["payload"]["device"] == "press-7"
        # The ACL: press-7 publishes under its own topics only, so it cannot pass
        # for press-8 (the pipeline takes the device from the topic).
        assert "user press-7\ntopic write sensors/press-7/#\n" in acl.read_text()
        forged = [
            ("sensors/press-8/temp", {"value": 13.0}),
            ("sensors/press-7/temp", {"value": 43.0}),
        ]
        assert _sensor_connect(broker, files, "press-7", SENSOR_PASSWORD, forged) == "Success"
        values = wait_until(
            lambda: (
                43.0 in (v := [r["payload"]["value"] for r in _telemetry(shared_hub, "press-tls")])
                and v
            ),
            15,
            "the allowed reading after the forged one",
        )
        assert 13.0 not in values
        # Refused: a wrong password, no credentials, and plain MQTT to the TLS port.
        assert _sensor_connect(broker, files, "press-7", SENSOR_PASSWORD + "x") == "Not authorized"
        assert _sensor_connect(broker, files, None, None) == "Not authorized"
        assert _sensor_connect(broker, None, "press-7", SENSOR_PASSWORD) == "no CONNACK"
        # The agent's own account is not the sensors' to use.
        assert _sensor_connect(broker, files, "fogline-agent", SENSOR_PASSWORD) == "Not authorized"
        log = agent.log_path.read_text()
        assert SENSOR_PASSWORD not in log and AGENT_PASSWORD not in log

        # An account the deployment drops is gone from the file, and the broker refuses it.
        _apply(
            shared_hub,
            tmp_path,
            _deployment("mqtt-tls", "mqtt-tls", "mqtt: {users: []}\n", MQTT_PIPELINE),
        )
        wait_until(
            lambda: passwords.read_text().splitlines() == [lines[0]], 15, "the sensor removed"
        )
        wait_until(
            lambda: _sensor_connect(broker, files, "press-7", SENSOR_PASSWORD) == "Not authorized",
            15,
            "the broker refusing the removed sensor",
            interval_s=0.2,
        )
    finally:
        agent.stop()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--mqtt", "mqtt://192.0.2.10:1883"], "plain MQTT only to a broker on loopback"),
        (["--mqtt", "mqtt://127.0.0.1:1883", "--mqtt-ca", "ca.pem"], "for mqtts:// URLs only"),
        (["--mqtt-username", "agent"], "the MQTT options need --mqtt URL"),
        (
            [
                *("--mqtt", "mqtt://127.0.0.1:1883", "--mqtt-username", "a\nb:$7$"),
                *("--sensor-password-file", "passwords"),
            ],
            "MQTT user name must be 1-64 letters",
        ),
        (
            ["--mqtt", "mqtt://127.0.0.1:1883", "--sensor-acl-file", "acl"],
            "an ACL file needs --sensor-password-file and --mqtt-username",
        ),
    ],
)
def test_the_agent_refuses_mqtt_settings_that_would_send_in_clear(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("unused")
    result = subprocess.run(
        [
            *fogline_cmd(),
            *("agent", "run", "--hub", "https://127.0.0.1:9", "--ca", str(ca)),
            *("--data-dir", str(tmp_path / "edge"), *args),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert expected in " ".join(result.stderr.replace("│", " ").split()), result.stderr
