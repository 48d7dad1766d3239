"""`kind: agent` releases built from this source tree, and agents run under the launcher.

A "new agent" is today's `fogline` package with another version string; a
bad one keeps the package but replaces its entry point (`__main__`): it
exits at start, or it runs without ever reaching the hub.
"""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path
from typing import Any, Literal

from fogline import __version__
from fogline.artifact import build_release, load_private_key, sign_release

from .processes import AgentProcess, HubProcess

SRC = Path(__file__).parents[2] / "src" / "fogline"
BUILTIN_VERSION = __version__
Behaviour = Literal["good", "exits", "mute"]
_MAINS = {
    "exits": "import sys\n\nsys.exit(3)\n",
    # Alive, but never reaching the hub: a bounded wait, then gone.
    "mute": "import time\n\ntime.sleep(120)\n",
}


def agent_release(hub: HubProcess, work: Path, key: Path, version: str, behaves: Behaviour) -> None:
    """Build, sign and push fogline-agent `version` from this source tree."""
    src = work / f"agent-{version}"
    shutil.copytree(SRC, src / "fogline", ignore=shutil.ignore_patterns("__pycache__"))
    init = src / "fogline" / "__init__.py"
    text, count = re.subn(r'__version__ = "[^"]*"', f'__version__ = "{version}"', init.read_text())
    assert count == 1, "fogline/__init__.py sets __version__ once"
    init.write_text(text)
    if behaves != "good":
        (src / "fogline" / "__main__.py").write_text(_MAINS[behaves])
    (src / "fogline-module.yaml").write_text(
        f"name: fogline-agent\nversion: {version}\nkind: agent\narchitectures: [any]\n"
    )
    archive = work / f"fogline-agent-{version}.tar.zst"
    # Built and signed in this process (the CLI's own code), pushed by the CLI.
    build_release(src, archive)
    sign_release(archive, load_private_key(key))
    hub.cli("release", "push", str(archive))


def agent_deployment(name: str, fleet: str, version: str, rollout: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {{name: {name}}}
        spec:
          selector: {{matchLabels: {{fleet: {fleet}}}}}
          modules: [{{name: fogline-agent, release: fogline-agent@{version}}}]
          rollout: {rollout}
        """)


def launched_agent(
    hub: HubProcess, root: Path, name: str, claim: str, *, deadline: str = "30s", **kw: Any
) -> AgentProcess:
    """An agent under the launcher, its launcher state in `<root>/<name>/launcher`."""
    return AgentProcess(
        root / name / "data",
        hub,
        name,
        claim,
        launcher_root=root / name / "launcher",
        trial_deadline=deadline,
        **kw,
    )


def agent_update(hub: HubProcess, device: str) -> dict[str, Any] | None:
    """The node's last reported outcome of its fogline-agent update, if any."""
    modules = hub.device(device).get("reported", {}).get("modules") or {}
    update = (modules.get("updates") or {}).get("fogline-agent")
    return dict(update) if update else None
