"""Self-healing restarts against a real hub, a real agent and a real module
whose RSS grows (hub/_restart_healing.py, agent/modules/_restarts.py).

The module allocates 2 MB every 100 ms up to 300 MB. The deployment asks
the hub to restart it when its RSS trend reaches 150 MiB within an hour: the
hub asks once (the desired document's restartGeneration), audited by the
actor `hub`, listed in the insights and posted to the alert webhook once; the
agent restarts it (a new PID) and reports the generation
honoured; the module grows past the limit again and is not restarted within
the cooldown; an agent restart does not honour the request a second time.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import (
    FAST_FORECAST_HUB_ARGS,
    AgentProcess,
    HubProcess,
    start_hub,
    wait_until,
)
from tests.support.receivers import Receiver

MIB = 1024 * 1024
LEAK = textwrap.dedent("""\
    import sys, time

    held = []
    print("leaking", flush=True)
    while True:
        if len(held) < 150:  # 300 MB at most
            held.append(b"\\x01" * 2_000_000)  # touched: resident, not just reserved
            if len(held) == 150:
                print("cap reached", flush=True)
        time.sleep(0.1)
    """)
DEPLOYMENT = textwrap.dedent("""\
    apiVersion: fogline.dev/v1
    kind: Deployment
    metadata: {name: leaky}
    spec:
      selector: {}
      modules:
        - name: leaky
          release: leaky@1.0.0
      selfHealing:
        restartOnMemoryTrend: {limit: 150MiB, within: 1h, cooldown: 10m}
    """)


def _push_leaky_release(hub: HubProcess, tmp_path: Path) -> None:
    key = hub.trust_new_key(tmp_path / "keys")
    source = tmp_path / "leaky-src"
    source.mkdir()
    (source / "leak.py").write_text(LEAK)
    (source / "fogline-module.yaml").write_text(
        textwrap.dedent("""\
            name: leaky
            version: 1.0.0
            command: [python3, leak.py]
            health: {uptime: 1s}
            startGrace: 1s
            stopGrace: 2s
            restart: {policy: always, backoff: {initial: 200ms, max: 2s}}
            architectures: [any]
            """)
    )
    archive = tmp_path / "leaky.tar.zst"
    hub.cli("release", "build", str(source), "-o", str(archive))
    hub.cli("release", "sign", str(archive), "--key", str(key))
    hub.cli("release", "push", str(archive))


def _module(hub: HubProcess) -> dict[str, Any]:
    modules = (hub.device("node-1").get("reported") or {}).get("modules") or {}
    return dict((modules.get("modules") or {}).get("leaky") or {})


def _rss(hub: HubProcess) -> int:
    health = (hub.device("node-1").get("reported") or {}).get("health") or {}
    return int(((health.get("modules") or {}).get("leaky") or {}).get("rss_bytes") or 0)


def _restarts_audited(hub: HubProcess) -> list[dict[str, Any]]:
    with hub.client() as client:
        entries: list[dict[str, Any]] = client.get(
            "/v1/audit", params={"action": "module.restart"}
        ).json()
    return entries


@pytest.mark.timeout(240)
def test_a_leaking_module_is_restarted_once_by_the_hub_and_not_again_within_the_cooldown(
    tmp_path: Path, receiver: Receiver
) -> None:
    hub = start_hub(
        tmp_path / "hub",
        extra_args=[
            *FAST_FORECAST_HUB_ARGS,
            "--alert-webhook",
            receiver.url(),
        ],
    )
    agent = AgentProcess(tmp_path / "node", hub, "node-1", hub.create_claim())
    try:
        _push_leaky_release(hub, tmp_path)
        agent.start()
        agent.wait_enrolled()
        (tmp_path / "leaky.yaml").write_text(DEPLOYMENT)
        hub.cli("apply", "-f", str(tmp_path / "leaky.yaml"))
        first_pid = int(wait_until(lambda: _module(hub).get("pid"), 60, "leaky running"))

        # The hub asks, the agent restarts it: a new process, generation 1 honoured.
        honoured = wait_until(
            lambda: (m := _module(hub)).get("restart_generation") == 1 and m.get("pid") and m,
            90,
            "the restart asked and honoured",
        )
        second_pid = int(honoured["pid"])
        assert second_pid != first_pid
        assert honoured.get("restarts", 0) == 0  # not counted as a crash
        [entry] = _restarts_audited(hub)
        assert (entry["actor"], entry["target"], entry["outcome"]) == ("hub", "node-1", "ok")
        detail = entry["detail"]
        assert (detail["module"], detail["deployment"], detail["generation"]) == (
            "leaky",
            "leaky",
            1,
        )
        assert detail["limit_bytes"] == 150 * MIB and detail["bytes_per_s"] > 0
        assert "leaky RSS" in detail["reason"] and "150 MiB" in detail["reason"]
        # The insights list it from that entry, in words; the webhook got it.
        with hub.client() as client:
            [action] = client.get("/v1/insights").json()["actions"]
        assert (action["action"], action["device"], action["module"]) == (
            "restart",
            "node-1",
            "leaky",
        )
        assert (action["audit_seq"], action["reason"]) == (entry["seq"], detail["reason"])
        words = action["detail"]
        assert words.startswith("restarted leaky on node-1: RSS ") and "MiB/h" in words, words
        assert "limit 150 MiB" in words, words
        table = hub.cli("insights", "ls", "-o", "table").stdout
        assert "self-healing: restart" in table and "node-1/leaky" in table, table
        wait_until(lambda: _actions_posted(receiver), 20, "the restart at the webhook")
        [posted] = _actions_posted(receiver)
        assert (posted["id"], posted["action"], posted["detail"]) == (
            f"action-{entry['seq']}",
            "restart",
            words,
        )
        with hub.client() as client:
            served = client.get("/v1/devices/node-1/desired").json()
        [module] = served["document"]["modules"]
        assert module["restartGeneration"] == 1
        # Honoured, the request stays in what the hub compiles for the device:
        # the unchanged manifest plans no change (exit 0, not 2).
        plan = hub.cli("plan", "-f", str(tmp_path / "leaky.yaml"), check=False)
        assert plan.returncode == 0, plan.stdout

        # It leaks past the limit again, to its cap: within the cooldown, the
        # hub does not ask again, though every forecast pass sees the trend.
        wait_until(lambda: _rss(hub) > 250 * MIB, 90, "the new process past the limit")
        wait_until(lambda: "cap reached" in _stdout(agent), 30, "the module at its cap")
        assert len(_restarts_audited(hub)) == 1
        assert _module(hub)["pid"] == second_pid
        assert len(_actions_posted(receiver)) == 1

        # An agent restart applies the same document again: not a second restart.
        agent.stop()
        agent.start()
        agent.wait_enrolled()
        third = wait_until(
            lambda: (m := _module(hub)).get("pid") not in (None, second_pid) and m,
            60,
            "leaky running under the restarted agent",
        )
        assert third["restart_generation"] == 1
        assert _requested_count(agent) == 1
    finally:
        agent.stop()
        hub.stop()


def _actions_posted(receiver: Receiver) -> list[dict[str, Any]]:
    bodies = [json.loads(seen.body) for seen in list(receiver.seen)]
    return [b for b in bodies if b.get("kind") == "self-healing"]


def _stdout(agent: AgentProcess) -> str:
    from fogline.agent.supervisor import log_path

    path = log_path(agent.data_dir / "logs", "leaky", "stdout")
    return path.read_text(errors="replace") if path.exists() else ""


def _requested_count(agent: AgentProcess) -> int:
    """Restarts the agent honoured, over all its runs (its whole log)."""
    return agent.log_path.read_text(errors="replace").count("module.restart_requested")
