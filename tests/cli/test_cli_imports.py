"""Operator commands do not load the agent, the simulator or the SBOM
library, and a run of `fogline X` imports X's module alone: `fogline apply`
spent about 0.5 s of CPU importing every command group before it sent
anything (issue #18, propagation: the CLI's start-up is part of apply ->
applied). `fogline --help` lists every command without importing one."""

import json
import subprocess
import sys
from pathlib import Path

from fogline.cli._commands import BY_NAME, COMMANDS
from tests.support.processes import ENV, HubProcess, fogline_cmd

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


def _imported(stderr: str) -> set[str]:
    """The modules `python -X importtime` says a process imported."""
    return {
        line.split("|")[2].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and not line.endswith("| imported package")
    }


def _entry_modules(*names: str) -> set[str]:
    """The modules of these entries of the command table."""
    return {"fogline.cli" + BY_NAME[name].module for name in names}


def test_apply_imports_its_own_command_group_alone(hub: HubProcess, tmp_path: Path) -> None:
    manifest = tmp_path / "fleet.yaml"
    manifest.write_text(
        "apiVersion: fogline.dev/v1\nkind: Deployment\nmetadata: {name: web}\n"
        "spec:\n  selector: {}\n  config: {rate_hz: 3}\n"
    )
    env = {**ENV, "FOGLINE_HUB": hub.url, "FOGLINE_TOKEN": hub.token, "FOGLINE_CA": str(hub.ca)}
    for output in ("json", "table"):
        done = subprocess.run(
            [
                sys.executable,
                "-X",
                "importtime",
                "-m",
                "fogline",
                "apply",
                "-f",
                str(manifest),
                "-o",
                output,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        imported = _imported(done.stderr)
        assert "fogline.cli._manifests" in imported  # the probe sees the command's own module
        others = _entry_modules(*BY_NAME) - _entry_modules("apply", "version")
        assert sorted(others & imported) == []
        # Nor the manifest schema and wire models: the hub validates the files.
        heavy = ("fogline.manifest._schema", "fogline.manifest._load", "fogline.protocol")
        assert sorted(m for m in imported if m.startswith(heavy)) == []
        # Nor httpx's own command-line tool (click, pygments): see skip_httpx_cli.
        assert sorted(m for m in imported if m.split(".")[0] in ("click", "pygments")) == []
    assert "web" in hub.cli("get", "deployments", "-o", "json").stdout


_WHOLE = "import sys\nfrom fogline.cli import app\napp(sys.argv[1:])"


def _whole_help() -> str:
    """`fogline --help` as the whole command (every group imported) renders it."""
    done = subprocess.run(
        [sys.executable, "-c", _WHOLE, "--help"],
        capture_output=True,
        text=True,
        env={**ENV, "COLUMNS": "120"},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_help_lists_every_command_as_the_whole_command_does_importing_none() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "fogline", "--help"],
        capture_output=True,
        text=True,
        env={**ENV, "COLUMNS": "120"},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # Word for word, usage line aside (`-m fogline` against `-c`): a help line
    # in the table that drifted from its command's docstring shows here.
    assert done.stdout.splitlines()[2:] == _whole_help().splitlines()[2:]
    for entry in COMMANDS:
        assert f"│ {entry.name} " in done.stdout, entry.name
    imported = _imported(done.stderr)
    assert sorted(_entry_modules(*BY_NAME) & imported) == ["fogline.cli._root"]


def _fogline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*fogline_cmd(), *args],
        capture_output=True,
        text=True,
        env={**ENV, "COLUMNS": "120"},
        timeout=60,
    )


def test_the_command_is_the_word_click_reads_as_one() -> None:
    # An option first: the root's --help and --version end the run there.
    assert "│ vulns " in _fogline("--help", "apply").stdout
    assert _fogline("--version", "apply").stdout.startswith("fogline ")
    # After `--`, the next word is the command.
    assert "Apply manifests" in _fogline("--", "apply", "--help").stdout
    # An unknown command is refused with the names of every command to hand.
    typo = _fogline("aply")
    assert typo.returncode == 2 and "No such command 'aply'. Did you mean 'apply'?" in typo.stderr
    unknown = _fogline("--bogus", "apply")
    assert unknown.returncode == 2 and "No such option: --bogus" in unknown.stderr
