"""`fogline tuf`: the offline root of trust for updates (The Update Framework).

    fogline tuf online-key > hub-online.json                 # on a connected machine
    fogline tuf init --dir /media/offline/tuf --keys 3 --threshold 2 \\
        --online-key hub-online.json                         # offline
    fogline tuf delegate --dir /media/offline/tuf --module thermo-filter \\
        --key release-2026.pub                               # offline
    fogline tuf push --dir /media/offline/tuf                # uploads the JSON only
    fogline tuf rotate-root --dir /media/offline/tuf --keys 3   # offline

The directory's key files never leave the offline machine; `push` reads only
its JSON files (root versions and targets). See docs/security.md for the
ceremony. Errors are one line on stderr (exit 1).
"""

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from securesystemslib.signer import Key

from fogline._errors import FoglineError
from fogline.hubclient import HubRejectedError

from ._client import HubClient
from ._common import CaOpt, HubOpt, TokenOpt, connect, err_console

app = typer.Typer(
    help="TUF metadata: the offline root, module delegations, and uploads to the hub.",
    no_args_is_help=True,
)

DirOpt = Annotated[
    Path, typer.Option("--dir", help="The offline TUF directory (root keys and metadata).")
]
_MAX_PUBLIC_FILE_BYTES = 64 * 1024


def _read_public(path: Path) -> Key:
    """A TUF key from a public key file: PEM or base64 (fogline keys create's
    .pub), or the JSON `fogline tuf online-key` prints."""
    from fogline.artifact import ReleaseKeyError, load_public_key
    from fogline.tuf import public_key

    try:
        with path.open("rb") as fh:
            text = fh.read(_MAX_PUBLIC_FILE_BYTES).decode("utf-8", "replace")
    except OSError as exc:
        raise FoglineError(f"{path}: {exc.strerror or exc}") from None
    if text.lstrip().startswith("{"):
        try:
            text = str(json.loads(text)["public_key"])
        except (ValueError, KeyError, TypeError):
            raise FoglineError(f"{path}: JSON without a public_key field") from None
    try:
        return public_key(load_public_key(text))
    except ReleaseKeyError as exc:
        raise FoglineError(f"{path}: {exc.reason}") from None


@app.command("online-key")
def online_key(hub: HubOpt = None, token: TokenOpt = None, ca: CaOpt = None) -> None:
    """Print the hub's online key (it signs snapshot and timestamp) as JSON, for `init`."""
    with connect(hub, token, ca) as client:
        answer = client.get("/v1/tuf/online-key")
    typer.echo(json.dumps(answer, indent=2))


@app.command("init")
def init(
    directory: DirOpt,
    online_key_file: Annotated[
        Path, typer.Option("--online-key", help="The hub's key: `fogline tuf online-key` output.")
    ],
    keys: Annotated[int, typer.Option("--keys", help="Root keys to generate (1-16).")] = 3,
    threshold: Annotated[
        int, typer.Option("--threshold", help="How many of them must sign root and targets.")
    ] = 2,
) -> None:
    """Create the offline root: KEYS Ed25519 key files (0600) and root and
    targets metadata version 1, signed by all of them."""
    from fogline.tuf import OfflineRepo, TufError

    try:
        md = OfflineRepo(directory).init(keys, threshold, _read_public(online_key_file))
    except TufError as exc:
        raise FoglineError(str(exc)) from None
    err_console.print(
        f"root v{md.signed.version}: {keys} keys, threshold {threshold}, in {directory}",
        highlight=False,
    )
    typer.echo(str(directory / "root.json"))


@app.command("delegate")
def delegate(
    directory: DirOpt,
    module: Annotated[str, typer.Option("--module", help="The module name.")],
    key: Annotated[
        list[Path], typer.Option("--key", help="A release key's public file (repeatable).")
    ],
    threshold: Annotated[
        int, typer.Option("--threshold", help="How many of the keys must sign a release.")
    ] = 1,
) -> None:
    """Let these release keys (THRESHOLD of them) sign releases of MODULE,
    replacing whatever keys it had: a new targets version, signed offline."""
    from fogline.tuf import OfflineRepo, TufError

    try:
        md = OfflineRepo(directory).delegate(module, [_read_public(p) for p in key], threshold)
    except TufError as exc:
        raise FoglineError(str(exc)) from None
    err_console.print(
        f"targets v{md.signed.version}: {module} signed by {threshold} of {len(key)} key(s)",
        highlight=False,
    )
    typer.echo(str(directory / "targets.json"))


@app.command("rotate-root")
def rotate_root(
    directory: DirOpt,
    keys: Annotated[
        int | None, typer.Option("--keys", help="Replace every root key by this many new ones.")
    ] = None,
    threshold: Annotated[int | None, typer.Option("--threshold", help="The new threshold.")] = None,
    online_key_file: Annotated[
        Path | None, typer.Option("--online-key", help="A new online key for the hub.")
    ] = None,
) -> None:
    """Sign a new root version with a threshold of the current root keys (and
    of the new ones); retired key files move to DIR/retired. Then `push`."""
    from fogline.tuf import OfflineRepo, TufError

    if keys is None and threshold is None and online_key_file is None:
        raise typer.BadParameter("give --keys, --threshold or --online-key")
    online = _read_public(online_key_file) if online_key_file is not None else None
    try:
        md = OfflineRepo(directory).rotate_root(keys=keys, threshold=threshold, online_key=online)
    except TufError as exc:
        raise FoglineError(str(exc)) from None
    err_console.print(
        f"root v{md.signed.version} signed; now run fogline tuf push", highlight=False
    )
    typer.echo(str(directory / "root.json"))


@app.command("push")
def push(directory: DirOpt, hub: HubOpt = None, token: TokenOpt = None, ca: CaOpt = None) -> None:
    """Upload the root versions the hub lacks, then targets (JSON files only)."""
    from fogline.tuf import ROOT, TARGETS, OfflineRepo

    repo = OfflineRepo(directory)
    files = [(ROOT, p) for p in repo.root_versions()] + [(TARGETS, repo.targets_file)]
    with connect(hub, token, ca) as client:
        have = _hub_version(client, ROOT)
        for role, path in files:
            if role == ROOT and int(path.name.split(".", 1)[0]) <= have:
                continue
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise FoglineError(f"{path}: {exc.strerror or exc}") from None
            answer = client.request(
                "PUT",
                f"/v1/tuf/roles/{role}",
                content=data,
                headers={"content-type": "application/json"},
            )
            verb = "uploaded" if answer["created"] else "already on the hub:"
            err_console.print(f"{verb} {role} v{answer['version']}", highlight=False)


def hub_metadata(client: HubClient, role: str) -> dict[str, Any] | None:
    """The hub's newest metadata of `role` as JSON, or None when it has none."""
    try:
        answer: dict[str, Any] = client.get(f"/v1/tuf/metadata/{role}.json")
    except HubRejectedError as exc:
        if exc.status == 404:
            return None
        raise
    return answer


def _hub_version(client: HubClient, role: str) -> int:
    answer = hub_metadata(client, role)
    return 0 if answer is None else int(answer["signed"]["version"])
