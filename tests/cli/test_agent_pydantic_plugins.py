"""The agent's process loads no pydantic plugin, and not `importlib.metadata`
to look for one, unless its environment asks for plugins (issue #18, "Agent
memory"; `fogline.cli._agent_main.skip_pydantic_plugins`).

Each case is a fresh interpreter with a real plugin installed beside it (a
distribution on its path whose `pydantic` entry point records that it was
loaded), which builds and uses a protocol model as the agent does.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ENV

_PROBE = """
import json, sys
from fogline.cli._agent_main import skip_pydantic_plugins
skipped = skip_pydantic_plugins()
from fogline.protocol import OutboxReport
report = OutboxReport.model_validate({"depth": 3, "bytes": 10, "max_bytes": 100})
print(json.dumps({
    "skipped": skipped,
    "again": skip_pydantic_plugins(),
    "depth": report.depth,
    "loaded": sorted(m for m in ("importlib.metadata", "zipfile", "csv") if m in sys.modules),
    "plugin": "recording_plugin" in sys.modules,
}))
"""

_PLUGIN = """
class Plugin:
    def new_schema_validator(self, *args, **kwargs):
        return None, None, None

plugin = Plugin()
"""


def _installed_plugin(root: Path) -> Path:
    """A directory holding a distribution with a `pydantic` entry point."""
    site = root / "site"
    info = site / "recording_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: recording-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pydantic]\nrecording = recording_plugin:plugin\n")
    (site / "recording_plugin.py").write_text(_PLUGIN)
    return site


def _probe(site: Path, setting: str | None) -> dict[str, object]:
    env = {k: v for k, v in ENV.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    env["PYTHONPATH"] = os.pathsep.join([env.get("PYTHONPATH", ""), str(site)]).strip(os.pathsep)
    if setting is not None:
        env["PYDANTIC_DISABLE_PLUGINS"] = setting
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("setting", [None, "__all__", "1", "true"])
def test_no_plugin_and_no_entry_point_scan_unless_asked(tmp_path: Path, setting: str | None):
    result = _probe(_installed_plugin(tmp_path), setting)
    assert result == {
        "skipped": True,
        "again": True,
        "depth": 3,
        "loaded": [],
        "plugin": False,
    }


@pytest.mark.parametrize("setting", ["", "some-other-plugin"])
def test_an_operators_own_setting_loads_plugins_as_pydantic_documents(tmp_path: Path, setting: str):
    result = _probe(_installed_plugin(tmp_path), setting)
    assert result["skipped"] is False and result["again"] is False
    assert result["depth"] == 3
    assert result["plugin"] is True  # pydantic's own loader found and loaded it
    assert "importlib.metadata" in result["loaded"]  # type: ignore[operator]


def test_leaving_out_the_plugin_by_name_is_pydantics_to_do(tmp_path: Path):
    result = _probe(_installed_plugin(tmp_path), "recording")
    assert result["skipped"] is False
    assert result["plugin"] is False


def test_a_pydantic_asking_the_loader_for_more_gets_the_real_one(tmp_path: Path) -> None:
    """Should a newer pydantic import more than `get_plugins` from its
    loader, the stand-in hands over to the real one instead of failing."""
    probe = (
        "from fogline.cli._agent_main import skip_pydantic_plugins\n"
        "assert skip_pydantic_plugins()\n"
        "from pydantic.plugin._loader import PYDANTIC_ENTRY_POINT_GROUP, get_plugins\n"
        "print(PYDANTIC_ENTRY_POINT_GROUP, list(get_plugins()) == [])\n"
    )
    env = {k: v for k, v in ENV.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["pydantic", "True"]
