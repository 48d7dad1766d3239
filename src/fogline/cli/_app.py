"""The whole `fogline` command: every operator command and the daemons."""

import typer

from fogline import __version__

from . import (
    _agent,
    _alerts,
    _audit,
    _ca,
    _claim,
    _config,
    _devices,
    _hub,
    _insights,
    _keys,
    _launcher,
    _logs,
    _manifests,
    _people,
    _release,
    _rollout,
    _sensors,
    _sim,
    _telemetry,
    _tuf,
    _vulns,
)
from ._root import new_app

app = new_app()
app.command("login")(_config.login)
app.add_typer(_config.app, name="config")
app.add_typer(_hub.app, name="hub")
app.add_typer(_agent.app, name="agent")
app.add_typer(_launcher.app, name="launcher")
app.add_typer(_claim.app, name="claim")
app.add_typer(_devices.app, name="devices")
app.command("plan")(_manifests.plan)
app.command("apply")(_manifests.apply)
app.add_typer(_manifests.get_app, name="get")
app.add_typer(_manifests.delete_app, name="delete")
app.add_typer(_keys.app, name="keys")
app.add_typer(_release.app, name="release")
app.add_typer(_tuf.app, name="tuf")
app.add_typer(_telemetry.app, name="telemetry")
app.command("logs")(_logs.logs)
app.add_typer(_rollout.app, name="rollout")
app.add_typer(_audit.app, name="audit")
app.add_typer(_alerts.app, name="alerts")
app.add_typer(_insights.app, name="insights")
app.add_typer(_ca.app, name="ca")
app.add_typer(_sim.app, name="sim")
app.add_typer(_people.users_app, name="users")
app.add_typer(_people.tokens_app, name="tokens")
app.command("whoami")(_people.whoami)
app.add_typer(_sensors.app, name="sensors")
app.add_typer(_vulns.vulndb_app, name="vulndb")
app.add_typer(_vulns.vulns_app, name="vulns")


@app.command("version")
def version() -> None:
    """Print the Fogline version alone (`fogline --version` says `fogline X.Y.Z`)."""
    typer.echo(__version__)
