"""The agent updates itself (issue #14): `kind: agent` releases, the launcher's trial, rollback.

Real hub, real agents under real launchers. The new agents are this source
tree with another version string; the bad ones keep the package and change
its entry point: one exits at start, one never reaches the hub.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fogline.launcher import BUILTIN, Pointer, load_pointer
from tests.support.agent_release import (
    BUILTIN_VERSION,
    agent_deployment,
    agent_release,
    agent_update,
    launched_agent,
)
from tests.support.processes import AgentProcess, HubProcess, start_hub, wait_until

GOOD, EXITS, MUTE = "0.2.0", "0.3.0", "0.4.0"


@dataclass
class Fleet:
    hub: HubProcess
    root: Path


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("selfupdate")
    hub = start_hub(root / "hub")
    try:
        keys = root / "keys"
        key_doc = hub.cli("keys", "create", "ci", "--dir", str(keys)).stdout
        hub.cli("apply", "-f", "-", input_text=key_doc)
        agent_release(hub, root, keys / "ci.key", GOOD, "good")
        agent_release(hub, root, keys / "ci.key", EXITS, "exits")
        yield Fleet(hub, root)
    finally:
        hub.stop()


def start_nodes(
    fleet: Fleet, tmp: Path, label: str, count: int, **kw: object
) -> list[AgentProcess]:
    claim = fleet.hub.create_claim(labels=f"fleet={label}", max_uses=count)
    nodes = [launched_agent(fleet.hub, tmp, f"{label}-{i}", claim, **kw) for i in range(count)]  # type: ignore[arg-type]
    for node in nodes:
        node.start()
    for node in nodes:
        node.wait_enrolled(60)
    return nodes


def pointer(node: AgentProcess) -> Pointer:
    assert node.launcher_root is not None
    return load_pointer(node.launcher_root / "pointer.json", builtin_version=BUILTIN_VERSION)


def apply(fleet: Fleet, name: str, label: str, version: str, rollout: str) -> None:
    fleet.hub.cli("apply", "-f", "-", input_text=agent_deployment(name, label, version, rollout))


def rollout_state(fleet: Fleet, name: str) -> dict:
    with fleet.hub.client() as client:
        response = client.get(f"/v1/rollouts/{name}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_good_agent_release_rolls_out_in_waves_and_every_node_runs_it(
    fleet: Fleet, tmp_path: Path
) -> None:
    nodes = start_nodes(fleet, tmp_path, "good", 3)
    apply(fleet, "agent-good", "good", GOOD, "{waves: [1, 100%], bake: 1s, waveTimeout: 2m}")
    wait_until(
        lambda: rollout_state(fleet, "agent-good")["state"] == "completed", 80, "rollout completed"
    )
    view = rollout_state(fleet, "agent-good")
    assert view["succeeded"] == 3 and view["failed"] == 0
    for node in nodes:
        device = fleet.hub.device(node.name)
        assert device["agent_version"] == GOOD, device
        assert (agent_update(fleet.hub, node.name) or {}).get("state") == "done"
        on = pointer(node)
        assert on.current.version == GOOD and on.trial is None and on.failed is None
        assert on.previous is not None and on.previous.name == BUILTIN
        # The slot is the release's tree, byte for byte: no bytecode written into it.
        assert on.current.path is not None
        assert not list(Path(on.current.path).rglob("__pycache__"))


def test_a_deployment_that_gives_the_agent_release_a_config_is_refused_at_the_field(
    fleet: Fleet,
) -> None:
    text = agent_deployment("agent-config", "none", GOOD, "{waves: [100%]}").replace(
        "release: fogline-agent@0.2.0}", "release: fogline-agent@0.2.0, config: {a: 1}}"
    )
    result = fleet.hub.cli("plan", "-f", "-", input_text=text, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "spec.modules[0].config" in result.stderr and "kind: agent" in result.stderr


def assert_rolled_back(fleet: Fleet, node: AgentProcess, version: str, why: str) -> None:
    """The node runs its builtin agent again and reported the failed update of `version`."""
    update = wait_until(
        lambda: (u := agent_update(fleet.hub, node.name)) and u["state"] == "failed" and u,
        30,
        f"{node.name} to report the failed agent update",
    )
    assert update["version"] == version and why in update["error"], update
    assert update["failed_in"] == "health", update
    device = fleet.hub.device(node.name)
    assert device["agent_version"] == BUILTIN_VERSION, device
    assert device["sync"]["status"] == "error" and version in device["sync"]["error"]
    on = pointer(node)
    assert on.current.name == BUILTIN and on.trial is None
    assert on.failed is not None and on.failed.slot.version == version
    assert why in on.failed.reason


def test_an_agent_that_exits_at_start_is_rolled_back_on_every_node_and_the_rollout_pauses(
    fleet: Fleet, tmp_path: Path
) -> None:
    nodes = start_nodes(fleet, tmp_path, "exits", 3)
    policy = "{waves: [100%], bake: 1s, maxFailures: 0, onFailure: pause, waveTimeout: 2m}"
    apply(fleet, "agent-exits", "exits", EXITS, policy)
    wait_until(lambda: rollout_state(fleet, "agent-exits")["state"] == "paused", 80, "paused")
    for node in nodes:
        assert_rolled_back(fleet, node, EXITS, "exited with code 3")
    # Paused at the first failed device (maxFailures: 0); the others rolled back by themselves.
    view = rollout_state(fleet, "agent-exits")
    assert view["failed"] >= 1 and "maxFailures" in view["reason"], view


@pytest.mark.slow
def test_an_agent_that_never_reconnects_is_rolled_back_at_its_deadline_and_pauses_the_rollout(
    fleet: Fleet, tmp_path: Path
) -> None:
    agent_release(fleet.hub, tmp_path, fleet.root / "keys" / "ci.key", MUTE, "mute")
    nodes = start_nodes(fleet, tmp_path, "mute", 2, deadline="6s")
    policy = "{waves: [100%], bake: 1s, maxFailures: 0, onFailure: pause, waveTimeout: 2m}"
    apply(fleet, "agent-mute", "mute", MUTE, policy)
    wait_until(lambda: rollout_state(fleet, "agent-mute")["state"] == "paused", 80, "paused")
    for node in nodes:
        assert_rolled_back(fleet, node, MUTE, "did not reconnect and report within 6s")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("point", "cut_on", "then"),
    [
        # What the pointer says after the cut: (current, trial starts), and what ends it.
        ("switch:before-pointer", (BUILTIN, None), "the builtin agent switches again"),
        ("switch:after-pointer", (GOOD, 0), "the new agent's first start"),
        ("trial:before-confirm", (GOOD, 1), "the new agent's second start"),
    ],
)
def test_a_power_cut_at_each_point_of_the_switch_ends_on_a_working_agent(
    fleet: Fleet, tmp_path: Path, point: str, cut_on: tuple[str, int | None], then: str
) -> None:
    label = "cut-" + point.replace(":", "-")
    # Armed from the start: only a switch or a trial reaches these points.
    (node,) = start_nodes(fleet, tmp_path, label, 1, env={"FOGLINE_FAULT_SWITCH_CRASH_AT": point})
    apply(fleet, label, label, GOOD, "{waves: [100%], bake: 1s, waveTimeout: 2m}")
    launcher = node.proc
    assert launcher is not None
    wait_until(lambda: launcher.poll() is not None, 60, f"the power cut at {point}")
    assert launcher.returncode == -9
    cut = pointer(node)
    current = BUILTIN if cut.current.name == BUILTIN else cut.current.version
    assert (current, cut.trial.starts if cut.trial else None) == cut_on
    node.env = {}
    node.start()  # the node boots: the launcher starts, as its service
    wait_until(lambda: fleet.hub.device(node.name)["agent_version"] == GOOD, 60, then)
    wait_until(lambda: pointer(node).trial is None, 30, "the trial confirmed")
    on = pointer(node)
    assert on.current.version == GOOD and on.failed is None
    assert (agent_update(fleet.hub, node.name) or {}).get("state") == "done"
