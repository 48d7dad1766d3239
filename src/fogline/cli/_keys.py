"""`fogline keys create NAME`: an Ed25519 release-signing key and its ReleaseKey manifest.

    fogline keys create thermo-team --modules 'thermo-*' | fogline apply -f -

writes `thermo-team.key` (private, 0600, never overwritten) and
`thermo-team.pub` (PEM), and prints the manifest that makes the hub and,
through enrollment, every node trust the key for the modules its scope
names (`--modules`, repeatable; without it, every module: discouraged).
"""

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Final

import typer
import yaml

from fogline._durable import write_new
from fogline._errors import FoglineError
from fogline.manifest import release_key_document

from ._common import err_console

app = typer.Typer(help="Release-signing keys.", no_args_is_help=True)

# The manifest's metadata.name rule (a DNS label), which also keeps the
# file names below `--dir`.
_NAME_RE: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)


def release_key_manifest(
    name: str, public_key_b64: str, modules: Sequence[str] | None = None
) -> str:
    """The `ReleaseKey` document for `fogline apply -f`, as YAML; scoped to
    `modules` (name patterns) when given."""
    document = release_key_document(name, public_key_b64, modules)
    text = yaml.safe_dump(document, sort_keys=False)
    if not modules:
        text += (
            "  # Unscoped: this key may sign every module. Scope it to the modules\n"
            "  # it is for (recommended), e.g.:\n"
            "  # modules: [thermo-*, gateway]\n"
        )
    return text


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Key name: the ReleaseKey's metadata.name.")],
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to write NAME.key and NAME.pub.")
    ] = Path("."),
    modules: Annotated[
        list[str] | None,
        typer.Option(
            "--modules",
            help="A module name pattern the key may sign (fnmatch, e.g. 'thermo-*'); "
            "repeat for several. Without it the key signs every module (discouraged).",
        ),
    ] = None,
) -> None:
    """Create a release key: NAME.key (private, 0600) and NAME.pub; print its ReleaseKey."""
    from fogline.artifact import generate_release_key, public_key_base64, public_key_pem
    from fogline.protocol import check_module_pattern

    if not _NAME_RE.fullmatch(name):
        raise typer.BadParameter(
            f"{name[:80]!r}: 1-63 lowercase letters, digits and '-', starting and ending "
            "with a letter or digit",
            param_hint="NAME",
        )
    for pattern in modules or ():
        try:
            check_module_pattern(pattern)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--modules") from None
    private_path, public_path = directory / f"{name}.key", directory / f"{name}.pub"
    for path in (private_path, public_path):
        if path.exists() or path.is_symlink():
            raise FoglineError(f"{path}: already exists; refusing to overwrite a key")
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)  # a new home for secrets: owner only
    if not directory.is_dir():
        raise FoglineError(f"{directory}: not a directory")
    pair = generate_release_key()
    try:
        pair.write_private_key(private_path)
        write_new(public_path, public_key_pem(pair.public_key).encode(), mode=0o644)
    except OSError as exc:
        raise FoglineError(f"cannot write the key: {exc}") from exc
    err_console.print(
        f"wrote {private_path} (secret: keep it off the hub and out of git) and "
        f"{public_path}; key id {pair.key_id}",
        highlight=False,
        soft_wrap=True,
    )
    typer.echo(release_key_manifest(name, public_key_base64(pair.public_key), modules), nl=False)
