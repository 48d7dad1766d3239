"""`fogline agent run --data-dir ./node`, as the README shows: modules still find their files.

A module runs in its install directory, so every path the agent hands it
(FOGLINE_CONFIG, HOME) must be absolute, whatever the agent's own working
directory and however --data-dir was spelled.
"""

import os
from pathlib import Path

import httpx
import pytest

from fogline.agent import AgentConfig
from tests.support.modules import deployment, release
from tests.support.processes import AgentProcess, HubProcess, free_port, wait_until


def test_agent_config_makes_its_paths_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = AgentConfig(
        hub_url="https://127.0.0.1:1", ca_path=Path("hub/ca.pem"), data_dir=Path("./node/../n")
    )
    assert config.data_dir == tmp_path / "n"
    assert config.ca_path == tmp_path / "hub" / "ca.pem"


def _served(port: int) -> dict | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=1).json()
    except (httpx.HTTPError, ValueError):
        return None


@pytest.mark.timeout(180)
def test_a_module_of_an_agent_with_a_relative_data_dir_opens_its_config_and_home(
    hub: HubProcess, tmp_path: Path
) -> None:
    key = hub.trust_new_key(tmp_path / "keys")
    port = free_port()
    release(hub, tmp_path, key, "1.0.0", port)
    workdir = tmp_path / "operator-shell"
    workdir.mkdir()
    # The agent runs in `workdir` and is told `--data-dir node`.
    agent = AgentProcess(workdir / "node", hub, "rel-1", hub.create_claim(), cwd=workdir)
    agent.start()
    try:
        agent.wait_enrolled()
        manifest = tmp_path / "web.yaml"
        manifest.write_text(deployment("1.0.0", config="{greeting: relative}"))
        hub.cli("apply", "-f", str(manifest))
        # The module answers `/` only if it could open FOGLINE_CONFIG and list HOME.
        served = wait_until(
            lambda: (s := _served(port)) and s["version"] == "1.0.0" and s, 60, "the module"
        )
        assert served["config"] == {"greeting": "relative"}
        # HOME is the module's own data directory, absolute, under the agent's.
        assert served["home"] == sorted(os.listdir(workdir / "node" / "module-data" / "web"))
        wait_until(lambda: hub.device("rel-1")["sync"]["status"] == "in-sync", 15, "in-sync")
        # And the agent kept its state where it was told: under its working directory.
        assert (workdir / "node" / "identity").is_dir()
        assert not os.path.isabs(agent.proc.args[agent.proc.args.index("--data-dir") + 1])  # type: ignore[union-attr]
    finally:
        agent.stop()
