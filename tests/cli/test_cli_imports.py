"""Operator commands do not load the agent, the simulator or the SBOM
library: `fogline apply` started in about a second, 0.65 s of it imports
(issue #18, propagation: the CLI's start-up is part of apply -> applied)."""

import json
import subprocess
import sys

# Loaded only inside the commands that use them (agent run, sim fleet,
# rollout rehearse, keys create, release build/sign/push/sbom, tuf, vulndb).
HEAVY = (
    "fogline.agent",
    "fogline.sim",
    "fogline.artifact",
    "cyclonedx",
    "tuf",
    "fogline.tuf",
    "fogline.vulns",
)
HELPS = [
    ["apply", "--help"],
    ["--help"],
    *(
        [group, "--help"]
        for group in ("agent", "sim", "release", "tuf", "keys", "vulndb", "rollout")
    ),
    ["rollout", "rehearse", "--help"],
    ["sim", "fleet", "--help"],
]

# Builds the Typer app's whole command tree, renders each help in turn, and
# prints what was imported (one process: imports only accumulate).
_PROBE = """
import io, json, sys
from contextlib import redirect_stdout
from typer.main import get_command
import fogline.cli
command = get_command(fogline.cli.app)
sizes = []
for args in json.loads(sys.argv[1]):
    out = io.StringIO()
    with redirect_stdout(out):
        try:
            command.main(args, prog_name="fogline")
        except SystemExit:
            pass
    sizes.append(len(out.getvalue()))
print(json.dumps({"sizes": sizes, "modules": sorted(sys.modules)}))
"""


def test_building_the_cli_and_every_help_load_no_agent_simulator_or_sbom():
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(HELPS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(size > 100 for size in found["sizes"]), found["sizes"]  # each help rendered
    heavy = [m for m in found["modules"] if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert heavy == []
