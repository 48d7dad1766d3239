"""The table of `fogline`'s commands: where each one lives, and the line
`fogline --help` shows for it.

A run of `fogline X ...` imports X's module alone (`one_command`): every
other group's imports (pydantic models, cryptography, TUF, the simulator)
cost a short-lived command its start-up, and `fogline apply`'s start-up is
part of the time a change takes to reach the fleet (BENCHMARKS.md,
"Desired-state propagation"). `fogline --help` lists every command from
this table without importing any of them (`listing`), which is why each
entry carries its help line; tests/cli/test_cli_imports.py checks that the
listing is the whole command's, word for word.
"""

from dataclasses import dataclass
from typing import Final

import typer

from ._root import new_app


@dataclass(frozen=True, slots=True)
class Entry:
    """`fogline NAME`: `attribute` of module `module` (relative to fogline.cli),
    a function (a command) or a typer.Typer (a group)."""

    name: str
    module: str
    attribute: str
    help: str  # the first paragraph of its help, as `fogline --help` lists it


# In the order `fogline --help` lists them: Typer lists commands before groups.
COMMANDS: Final[tuple[Entry, ...]] = (
    Entry(
        "login",
        "._config",
        "login",
        "Check a hub URL, CA and token against the hub, then store them as the current context.",
    ),
    Entry(
        "plan",
        "._manifests",
        "plan",
        "Preview what `apply` would change, per deployment and device.",
    ),
    Entry(
        "apply",
        "._manifests",
        "apply",
        "Apply manifests: every document valid and applied, or none.",
    ),
    Entry(
        "logs",
        "._logs",
        "logs",
        "Print a module's logs, or with --agent the agent's own, as the node\n"
        "shipped them (stderr lines marked with !).",
    ),
    Entry(
        "whoami",
        "._people",
        "whoami",
        "Who the hub takes you for: name, role, scope, and the token's expiry.",
    ),
    Entry(
        "version",
        "._root",
        "version",
        "Print the Fogline version alone (`fogline --version` says `fogline X.Y.Z`).",
    ),
    Entry(
        "config",
        "._config",
        "app",
        "Stored hubs (contexts): list them, switch between them, remove one.",
    ),
    Entry("hub", "._hub", "app", "Run the hub (cloud tier)."),
    Entry("agent", "._agent", "app", "Run the edge agent (one per node)."),
    Entry(
        "launcher",
        "._launcher",
        "app",
        "Run the agent under the launcher, which updates it safely.",
    ),
    Entry(
        "claim", "._claim", "app", "Provisioning claims: one token that can enroll many devices."
    ),
    Entry(
        "devices",
        "._devices",
        "app",
        "List, inspect, label, promote, revoke and remove devices; show their desired state.",
    ),
    Entry("get", "._manifests", "get_app", "Show applied manifests."),
    Entry("delete", "._manifests", "delete_app", "Delete applied manifests."),
    Entry("keys", "._keys", "app", "Release-signing keys."),
    Entry("release", "._release", "app", "Module releases: build, sign, push, list, remove."),
    Entry(
        "tuf",
        "._tuf",
        "app",
        "TUF metadata: the offline root, module delegations, and uploads to the hub.",
    ),
    Entry("telemetry", "._telemetry", "app", "Query telemetry stored by the hub."),
    Entry(
        "rollout",
        "._rollout",
        "app",
        "Staged rollouts: list, watch, pause, resume, abort, roll back.",
    ),
    Entry("audit", "._audit", "app", "The audit trail: every change to the fleet, hash-chained."),
    Entry(
        "alerts",
        "._alerts",
        "app",
        "Alerts the hub raises: offline, crash-loop, disk, memory, certificate, outbox.",
    ),
    Entry(
        "insights",
        "._insights",
        "app",
        "What the hub concludes from device health: disks and memory forecast to fill, devices "
        "unlike their peers, failing devices grouped by what they share, and the self-healing "
        "actions it took (restarts, quarantines) in the last 24 h.",
    ),
    Entry("ca", "._ca", "app", "The fleet CA: rotate it, retire the old one."),
    Entry("sim", "._sim", "app", "Simulate edge nodes against a hub."),
    Entry("users", "._people", "users_app", "Users and their roles (admin only)."),
    Entry(
        "tokens",
        "._people",
        "tokens_app",
        "API tokens: created with a name and a lifetime, shown once, revocable (admin only).",
    ),
    Entry("sensors", "._sensors", "app", "Credentials of sensors: ingest tokens, MQTT accounts."),
    Entry(
        "vulndb",
        "._vulns",
        "vulndb_app",
        "The offline vulnerability database: import OSV files, see what is there.",
    ),
    Entry(
        "vulns",
        "._vulns",
        "vulns_app",
        "Advisories that affect releases in the fleet, and the devices that run them.",
    ),
)
BY_NAME: Final = {entry.name: entry for entry in COMMANDS}


def add(app: typer.Typer, entry: Entry) -> None:
    """Import `entry`'s module and add its command or group to `app`."""
    # The import statement's machinery, not importlib.import_module: only it
    # is seen by `python -X importtime`, which is how this is checked.
    module = __import__(f"{__package__}{entry.module}", fromlist=[entry.attribute])
    found = getattr(module, entry.attribute)
    if isinstance(found, typer.Typer):
        app.add_typer(found, name=entry.name)
    else:
        app.command(entry.name)(found)


def whole() -> typer.Typer:
    """The whole command: every entry imported and added."""
    app = new_app()
    for entry in COMMANDS:
        add(app, entry)
    return app


def one_command(name: str) -> typer.Typer:
    """The root with one entry, `name`'s, added: what `fogline NAME ...` runs."""
    app = new_app()
    add(app, BY_NAME[name])
    return app


def _listed() -> None:
    """Never run: `command_word` sends a known command's name to `one_command`."""
    raise AssertionError("a listed command ran in place of its own")


def listing() -> typer.Typer:
    """The root with every entry as a stand-in that carries its help line:
    `fogline`, `fogline --help`, `--version` and an unknown command's error
    (with its suggestions), with nothing imported."""
    app = new_app()
    for entry in COMMANDS:
        app.command(entry.name, help=entry.help)(_listed)
    return app


def command_word(argv: list[str]) -> str | None:
    """The word of `argv` that names the command, as Click reads it: the
    first, or the one after a leading `--`. None when an option comes first:
    the root's options (--help, --version) end the run before any command,
    and an unknown one is an error, so the listing answers those."""
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv or (argv[0].startswith("-") and argv[0] != "-"):
        return None
    return argv[0]
