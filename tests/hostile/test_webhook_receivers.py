"""A real agent calling hostile webhook receivers on 127.0.0.1.

One agent for the module; each test applies its own pipelines (HTTP ingest
source, webhook outputs) and triggers them by POSTing records to the
agent's ingest. The receivers are allowed explicitly
(`allowPrivateNetwork: true`), except where the refusal is the point.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.processes import AgentProcess, HubProcess, wait_until
from tests.support.receivers import Concurrency, Receiver

MARKER = "reading-8b1f3c"  # in every payload: must never appear in the agent's log


@pytest.fixture(scope="module")
def agent(
    shared_hub: HubProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentProcess]:
    node = AgentProcess(
        tmp_path_factory.mktemp("hooks") / "edge", shared_hub, "hooks", shared_hub.create_claim()
    )
    node.start()
    try:
        node.wait_enrolled()
        yield node
    finally:
        node.stop()


def _apply(
    hub: HubProcess, agent: AgentProcess, tmp_path: Path, name: str, hooks: list[dict]
) -> None:
    """Run one pipeline whose every record calls each of `hooks`; wait until it runs."""
    outputs = [{"action": {"webhook": hook}} for hook in hooks]
    manifest = {
        "apiVersion": "fogline.dev/v1",
        "kind": "Deployment",
        "metadata": {"name": "hooks"},
        "spec": {
            "selector": {},
            "pipelines": [{"name": name, "source": {"http": {}}, "outputs": outputs}],
        },
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(manifest))  # JSON is YAML
    hub.cli("apply", "-f", str(path))
    wait_until(
        lambda: re.search(rf'"dataplane.configured".*"{name}"', agent.log_text()),
        20,
        f"pipeline {name} running",
    )


def _ingest(agent: AgentProcess, count: int = 1) -> None:
    port = int((agent.data_dir / "local-port").read_text())
    lines = "\n".join(json.dumps({"value": i, "note": MARKER}) for i in range(count))
    response = httpx.post(
        f"http://127.0.0.1:{port}/ingest",
        content=lines,
        headers={"content-type": "application/x-ndjson"},
        timeout=10,
    )
    assert response.status_code == 202, response.text


def _counter(agent: AgentProcess, kind: str) -> int:
    port = int((agent.data_dir / "local-port").read_text())
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    match = re.search(rf'^fogline_agent_dataplane_total\{{kind="{kind}"\}} (\S+)$', text, re.M)
    return int(float(match.group(1))) if match else 0


def _peak_rss_kib(agent: AgentProcess) -> int:
    assert agent.proc is not None
    status = Path(f"/proc/{agent.proc.pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1))  # type: ignore[union-attr]


def test_a_loopback_webhook_without_the_flag_is_refused_and_never_connects(
    shared_hub: HubProcess, agent: AgentProcess, tmp_path: Path
) -> None:
    receiver = Receiver("ok")
    port = receiver.port
    spellings = [
        f"http://127.0.0.1:{port}/hook",
        f"http://localhost:{port}/hook",
        f"http://LOCALHOST.:{port}/hook",
        f"http://2130706433:{port}/hook",
        f"http://0x7f.0.0.1:{port}/hook",
        f"http://127.1:{port}/hook",
        f"http://[::ffff:127.0.0.1]:{port}/hook",
        f"http://[::1]:{port}/hook",
        f"http://user:{MARKER}@127.0.0.1:{port}/hook?token={MARKER}",
    ]
    try:
        refused = _counter(agent, "webhooks_refused")
        _apply(shared_hub, agent, tmp_path, "refused", [{"url": url} for url in spellings])
        _ingest(agent)
        wait_until(
            lambda: _counter(agent, "webhooks_refused") >= refused + len(spellings),
            15,
            "every spelling refused",
        )
        assert receiver.connections == 0
        log = agent.log_text()
        assert '"dataplane.webhook_refused"' in log and "is loopback" in log
        assert MARKER not in log  # neither the payload nor the URL's credentials

        # The same receiver, allowed explicitly: it does get the call, so the
        # refusal above is the policy at work, not an unreachable port.
        _apply(
            shared_hub,
            agent,
            tmp_path,
            "allowed",
            [{"url": spellings[0], "allowPrivateNetwork": True}],
        )
        _ingest(agent)
        wait_until(lambda: receiver.seen, 15, "the allowed call")
        assert MARKER in receiver.seen[0].body.decode()
    finally:
        receiver.close()


def test_an_endless_answer_is_cut_at_the_cap_and_memory_stays_bounded(
    shared_hub: HubProcess, agent: AgentProcess, tmp_path: Path
) -> None:
    receiver = Receiver("endless")
    try:
        _apply(
            shared_hub,
            agent,
            tmp_path,
            "endless",
            [{"url": receiver.url(), "allowPrivateNetwork": True, "timeout": "30s"}],
        )
        peak_before = _peak_rss_kib(agent)
        calls = _counter(agent, "webhooks")
        _ingest(agent, 3)
        wait_until(
            lambda: (
                len(receiver.seen) == 3 and all(s.peer_closed_at is not None for s in receiver.seen)
            ),
            20,
            "the agent to hang up on every endless answer",
        )
        # The agent reads 64 KiB; the rest is what the kernel buffers held.
        assert max(s.bytes_sent for s in receiver.seen) < 32 * 1024 * 1024
        wait_until(lambda: _counter(agent, "webhooks") == calls + 3, 10, "calls counted")
        assert _peak_rss_kib(agent) - peak_before < 32 * 1024
    finally:
        receiver.close()


def test_a_dripping_receiver_is_cut_off_at_the_deadline(
    shared_hub: HubProcess, agent: AgentProcess, tmp_path: Path
) -> None:
    receiver = Receiver("drip")
    try:
        _apply(
            shared_hub,
            agent,
            tmp_path,
            "drip",
            [{"url": receiver.url(), "allowPrivateNetwork": True, "timeout": "2s"}],
        )
        failures = _counter(agent, "webhook_failures")
        _ingest(agent)
        wait_until(
            lambda: receiver.seen and receiver.seen[0].peer_closed_at is not None,
            15,
            "the agent to hang up",
        )
        seen = receiver.seen[0]
        assert seen.peer_closed_at is not None
        held = seen.peer_closed_at - seen.accepted_at
        assert 1.0 <= held <= 4.0, f"held {held:.1f}s for a 2s deadline"
        wait_until(
            lambda: _counter(agent, "webhook_failures") == failures + 1, 10, "failure counted"
        )
        assert "deadline" in agent.log_text()
    finally:
        receiver.close()


def test_slow_receivers_are_bounded_per_destination_and_in_total(
    shared_hub: HubProcess, agent: AgentProcess, tmp_path: Path
) -> None:
    everyone = Concurrency()
    slow = [Receiver("slow", hold_s=4.0, shared=everyone) for _ in range(5)]
    try:
        _apply(
            shared_hub,
            agent,
            tmp_path,
            "slow-five",
            [{"url": r.url(), "allowPrivateNetwork": True, "timeout": "10s"} for r in slow],
        )
        dropped = _counter(agent, "webhooks_dropped")
        for _ in range(8):  # 40 calls at once, far above the caps
            _ingest(agent)
        wait_until(lambda: everyone.now == 0 and everyone.peak > 0, 20, "slow calls done")
        assert max(r.mine.peak for r in slow) <= 4
        assert everyone.peak <= 16
        assert _counter(agent, "webhooks_dropped") > dropped
    finally:
        for receiver in slow:
            receiver.close()


def test_one_slow_receiver_does_not_starve_the_others(
    shared_hub: HubProcess, agent: AgentProcess, tmp_path: Path
) -> None:
    slow = [Receiver("slow", hold_s=8.0) for _ in range(2)]
    fast = Receiver("ok")
    try:
        _apply(
            shared_hub,
            agent,
            tmp_path,
            "slow-and-fast",
            [
                {"url": r.url(), "allowPrivateNetwork": True, "timeout": "10s"}
                for r in [*slow, fast]
            ],
        )
        started = time.monotonic()
        for i in range(10):
            _ingest(agent)
            wait_until(lambda i=i: len(fast.seen) == i + 1, 5, f"fast call {i + 1}")
        # All ten went through while the slow ones still held their slots.
        assert time.monotonic() - started < 8.0
        assert [r.mine.peak for r in slow] == [4, 4]
    finally:
        for receiver in [*slow, fast]:
            receiver.close()


def test_refusals_are_logged_without_flooding(
    shared_hub: HubProcess, agent: AgentProcess, tmp_path: Path
) -> None:
    url = "http://169.254.169.254/latest/meta-data/"
    _apply(shared_hub, agent, tmp_path, "metadata", [{"url": url}])
    before = agent.log_text().count("169.254.169.254 is link-local")
    for _ in range(5):
        refused = _counter(agent, "webhooks_refused")
        _ingest(agent)
        wait_until(lambda n=refused + 1: _counter(agent, "webhooks_refused") == n, 10, "refusal")
    assert agent.log_text().count("169.254.169.254 is link-local") - before == 1
