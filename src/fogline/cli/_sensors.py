"""`fogline sensors ...`: the credentials sensors use to reach a node.

    fogline sensors token line-1 --secret-file line-1.token
    fogline sensors account press-7 --secret-file press-7.password

Each makes FILE (0600, a new random secret) unless it exists, in which case
its secret is used, and prints the manifest entry that declares it: for
`spec.sensors.ingest.tokens`, the token's SHA-256; for
`spec.sensors.mqtt.users`, the password's Mosquitto PBKDF2-SHA512 hash.
Only these digests go into the manifest, the hub and the nodes; the secret
stays in FILE, for the sensor.
"""

import hashlib
import secrets
from pathlib import Path
from typing import Annotated

import typer
import yaml

from fogline._durable import write_new
from fogline._errors import FoglineError
from fogline.protocol import sensor_username_problem, token_name_problem

from ._common import err_console

app = typer.Typer(
    help="Credentials of sensors: ingest tokens, MQTT accounts.", no_args_is_help=True
)

SecretFileOpt = Annotated[
    Path,
    typer.Option(
        "--secret-file",
        help="Where the secret is: made (0600, random) when missing, else read (0600 or stricter).",
    ),
]


def _secret(path: Path) -> str:
    """The secret in `path`, made first (random, 0600) when there is none.

    Raises:
        FoglineError: the file cannot be read or written, or others may read it.
    """
    from fogline.security import TokenFileError, read_token_file

    if not path.exists() and not path.is_symlink():
        secret = secrets.token_urlsafe(32)
        try:
            write_new(path, (secret + "\n").encode(), mode=0o600)
        except OSError as exc:
            raise FoglineError(f"{path}: cannot write: {exc.strerror}") from exc
        err_console.print(f"wrote a new secret to {path} (for the sensor; keep it out of git)")
        return secret
    try:
        return read_token_file(path)
    except TokenFileError as exc:
        raise FoglineError(str(exc)) from exc


@app.command("token")
def token(
    name: Annotated[str, typer.Argument(help="The token's name in the deployment.")],
    secret_file: SecretFileOpt,
) -> None:
    """Print a `spec.sensors.ingest.tokens` entry for the token in --secret-file."""
    problem = token_name_problem(name)
    if problem:
        raise typer.BadParameter(problem, param_hint="NAME")
    digest = hashlib.sha256(_secret(secret_file).encode()).hexdigest()
    typer.echo(yaml.safe_dump([{"name": name, "sha256": digest}], sort_keys=False), nl=False)


@app.command("account")
def account(
    username: Annotated[str, typer.Argument(help="The sensor's MQTT user name.")],
    secret_file: SecretFileOpt,
) -> None:
    """Print a `spec.sensors.mqtt.users` entry for the password in --secret-file."""
    from fogline.security import hash_sensor_password

    problem = sensor_username_problem(username)
    if problem:
        raise typer.BadParameter(problem, param_hint="USERNAME")
    password_hash = hash_sensor_password(_secret(secret_file))
    entry = [{"username": username, "passwordHash": password_hash}]
    typer.echo(yaml.safe_dump(entry, sort_keys=False), nl=False)
