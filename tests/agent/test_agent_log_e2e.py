"""The agent's own log reaches the hub like module logs: `fogline logs NODE
--agent [--follow]`, against a real hub and a real agent; bounded, and with
no secret in it."""

import logging
import subprocess
import textwrap
from pathlib import Path

import orjson

from fogline.agent._agentlog import AGENT_LOG_STREAM, AgentLogHandler
from fogline.agent._logship import MAX_LINE_BYTES
from tests.support.processes import ENV, AgentProcess, HubProcess, fogline_cmd, wait_until

CONFIG = textwrap.dedent("""\
    apiVersion: fogline.dev/v1
    kind: Deployment
    metadata: {name: logged}
    spec:
      selector: {matchLabels: {site: logged}}
      config: {greeting: hello}
    """)


def test_the_agents_own_log_tails_and_follows_from_the_hub(hub: HubProcess, tmp_path: Path) -> None:
    claim = hub.create_claim(labels="site=logged")
    agent = AgentProcess(tmp_path / "node", hub, "logged-1", claim)
    agent.start()
    agent.wait_enrolled()

    # The tail: the agent's lines from its start, enrollment included.
    def shipped() -> str:
        return str(hub.cli("logs", "logged-1", "--agent").stdout)

    tail = wait_until(lambda: "agent.enrolled" in (out := shipped()) and out, 30, "agent lines")
    assert "fogline.agent" in tail
    # The claim is the one secret this agent was given: never shipped.
    with hub.client() as client:
        rows = client.get(
            "/v1/telemetry",
            params={"device": agent.wait_enrolled(), "stream": AGENT_LOG_STREAM, "since": "1h"},
        )
    assert rows.status_code == 200 and rows.json(), rows.text
    assert claim not in rows.text
    assert all(len(r["payload"]["line"].encode()) <= MAX_LINE_BYTES for r in rows.json())

    # --follow prints what the agent logs next: applying new desired state.
    out = tmp_path / "follow.out"
    env = {**ENV, "FOGLINE_HUB": hub.url, "FOGLINE_TOKEN": hub.token, "FOGLINE_CA": str(hub.ca)}
    with out.open("w") as sink:
        follower = subprocess.Popen(
            [*fogline_cmd(), "logs", "logged-1", "--agent", "--tail", "1", "--follow"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            wait_until(lambda: out.read_text().strip() != "", 30, "the tail line")
            # The agent applied its first (empty) desired state at start.
            before = out.read_text().count("sync.applied")
            hub.cli("apply", "-f", "-", input_text=CONFIG)
            wait_until(
                lambda: out.read_text().count("sync.applied") > before, 60, "the followed line"
            )
        finally:
            follower.terminate()
            follower.wait(10)

    # A module's logs and the agent's are told apart, and asked for clearly.
    both = hub.cli("logs", "logged-1", "web", "--agent", check=False)
    neither = hub.cli("logs", "logged-1", check=False)
    assert both.returncode != 0 and "not both" in both.stderr
    assert neither.returncode != 0 and "--agent" in neither.stderr


def test_the_agent_log_is_rate_limited_and_lines_are_bounded() -> None:
    handler = AgentLogHandler(rate=0.001, burst=3)
    logger = logging.getLogger("fogline.test-agentlog")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.warning("x" * (3 * MAX_LINE_BYTES))
        for i in range(50):
            logger.info("line %d", i, extra={"fields": {"claim": "SECRET-CLAIM", "token": "T0K"}})
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    items = handler.take_pending()
    assert len(items) == 3 and handler.dropped == 48  # the burst, the rest counted
    first = orjson.loads(items[0].payload)
    assert first["stream"] == "stderr" and len(first["line"].encode()) <= MAX_LINE_BYTES
    later = [orjson.loads(i.payload)["line"] for i in items[1:]]
    assert all("SECRET-CLAIM" not in line and "T0K" not in line for line in later)
    assert all("claim=[redacted]" in line for line in later)
