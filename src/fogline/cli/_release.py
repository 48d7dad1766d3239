"""`fogline release build|sign|push|ls|rm`: make, sign, upload and remove module releases.

    fogline release build ./thermo-filter -o thermo-filter-1.2.0.tar.zst
    fogline release sign thermo-filter-1.2.0.tar.zst --key release-2026.key
    fogline release push thermo-filter-1.2.0.tar.zst      # prints the digest
    fogline release sbom thermo-filter@1.2.0              # what is inside (CycloneDX)
    fogline release ls
    fogline release rm thermo-filter@1.1.0                # refused while in use

Errors are one line on stderr (exit 1); data only on stdout.
"""

import base64
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from fogline._errors import FoglineError
from fogline.hubclient import HubRejectedError

from ._client import HubClient
from ._common import (
    CaOpt,
    HubOpt,
    OutputOpt,
    TokenOpt,
    ago,
    connect,
    err_console,
    print_json,
    print_rows,
    wants_json,
)
from ._format import human_bytes

app = typer.Typer(help="Module releases: build, sign, push, list, remove.", no_args_is_help=True)

# Below this an upload is over before a progress bar could say anything.
PROGRESS_MIN_BYTES: Final = 8 * 1024 * 1024
_CHUNK: Final = 256 * 1024
# Generous: the hub hashes and fsyncs up to 512 MiB before it answers.
_PUSH_TIMEOUT_S: Final = 300.0

ArchiveArg = Annotated[Path, typer.Argument(help="The release archive (.tar.zst).")]

RELEASE_COLUMNS = [
    ("name", "NAME"),
    ("version", "VERSION"),
    ("digest", "DIGEST"),
    ("size", "SIZE"),
    ("key_id", "KEY ID"),
    ("pushed", "PUSHED"),
]


@contextlib.contextmanager
def _file_errors() -> Iterator[None]:
    """A missing or unreadable file is the user's mistake: one line, no traceback."""
    try:
        yield
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise FoglineError(f"{where}{exc.strerror or exc}") from exc


@app.command("build")
def build(
    directory: Annotated[Path, typer.Argument(help="Module directory with fogline-module.yaml.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The archive to write.")],
) -> None:
    """Pack a module directory into a reproducible archive; print its digest."""
    from fogline.artifact import build_release

    with _file_errors():
        info = build_release(directory, out)
    err_console.print(
        f"built {info.name} {info.version} → {info.path} ({human_bytes(info.size)}), "
        f"SBOM {info.sbom_path}",
        highlight=False,
    )
    typer.echo(info.digest)


@app.command("sign")
def sign(
    archive: ArchiveArg,
    key: Annotated[Path, typer.Option("--key", help="The private key (fogline keys create).")],
    tuf: Annotated[
        bool,
        typer.Option(
            "--tuf",
            help="Also sign the module's TUF role (ARCHIVE.tuf.json): the hub's newest "
            "version plus this release, or add this key's signature when the file "
            "already lists it (a threshold of release keys).",
        ),
    ] = False,
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
) -> None:
    """Sign an archive: writes ARCHIVE.sig next to it and prints its path."""
    from fogline.artifact import load_private_key, sign_release, signature_path

    from ._release_tuf import sign_module_role

    with _file_errors():
        pair = load_private_key(key)
        envelope = sign_release(archive, pair)
        size = archive.stat().st_size
    err_console.print(
        f"signed {envelope.name} {envelope.version} ({envelope.digest}) with {envelope.keyid}",
        highlight=False,
    )
    if tuf:
        with _file_errors():
            path = sign_module_role(archive, envelope, size, key, lambda: connect(hub, token, ca))
        err_console.print(f"signed TUF metadata {path}", highlight=False)
    typer.echo(str(signature_path(archive)))


def _chunks(path: Path, advance: Callable[[int], None]) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            advance(len(chunk))
            yield chunk


def _upload(client: HubClient, archive: Path, size: int, header: str) -> dict[str, Any]:
    from fogline.protocol import SIGNATURE_HEADER

    headers = {
        SIGNATURE_HEADER: header,
        "content-type": "application/octet-stream",
        # Explicit, so the body is sent with a length (not chunked) and the hub
        # can refuse an oversized one before reading it.
        "content-length": str(size),
    }
    if size < PROGRESS_MIN_BYTES or not err_console.is_terminal:
        result: dict[str, Any] = client.post(
            "/v1/releases",
            content=_chunks(archive, lambda _n: None),
            headers=headers,
            timeout=_PUSH_TIMEOUT_S,
        )
        return result
    columns = (
        TextColumn("uploading {task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(archive.name, total=size)
        result = client.post(
            "/v1/releases",
            content=_chunks(archive, lambda n: progress.advance(task, n)),
            headers=headers,
            timeout=_PUSH_TIMEOUT_S,
        )
        return result


@app.command("push")
def push(
    archive: ArchiveArg,
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    signature: Annotated[
        Path | None, typer.Option("--signature", help="The envelope (default: ARCHIVE.sig).")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Upload even when the hub lists this release: after a restore from a "
            "backup made with --no-artifacts, the hub has the record but not the archive.",
        ),
    ] = False,
) -> None:
    """Upload a signed archive to the hub; print its digest.

    Pushing the same name, version and bytes again is a no-op; the same name
    and version with other bytes is refused (versions are immutable).
    """
    from fogline.artifact import read_signature, sha256_file, signature_path

    from ._release_tuf import push_module_role, tuf_role_path

    sig_path = signature or signature_path(archive)
    with _file_errors():
        size = archive.stat().st_size
        if not sig_path.exists():
            raise FoglineError(
                f"{sig_path}: no signature; run `fogline release sign {archive} --key KEY`"
            )
        envelope = read_signature(sig_path)
        # Checked here too, so a stale .sig fails in a second, not after an upload.
        digest = sha256_file(archive)
    if digest != envelope.digest:
        raise FoglineError(
            f"{archive} is {digest} but {sig_path} signs {envelope.digest}; "
            "the archive changed after signing: sign it again"
        )
    header = base64.b64encode(envelope.to_json()).decode("ascii")
    with connect(hub, token, ca) as client:
        try:
            existing = client.get(f"/v1/releases/{envelope.name}/{envelope.version}")
        except HubRejectedError as exc:
            if exc.status != 404:
                raise
            existing = None
        if existing is not None and existing["digest"] == digest and not force:
            err_console.print(
                f"{envelope.name} {envelope.version} is already on the hub", highlight=False
            )
        else:
            with _file_errors():
                result = _upload(client, archive, size, header)
            err_console.print(
                f"pushed {result['name']} {result['version']} ({human_bytes(result['size'])})",
                highlight=False,
            )
            if result.get("blocked_by"):
                err_console.print(
                    "[yellow]warning[/yellow]: blocked by a VulnerabilityPolicy: "
                    + ", ".join(result["blocked_by"])
                    + "; no deployment may roll it out",
                    highlight=False,
                )
        if tuf_role_path(archive).exists():
            # After the archive: a node told of the release finds its bytes.
            with _file_errors():
                answer = push_module_role(client, archive, envelope.name)
            err_console.print(
                f"TUF {answer['role']} v{answer['version']} "
                f"{'uploaded' if answer['created'] else 'already on the hub'}",
                highlight=False,
            )
    typer.echo(digest)


@app.command("ls")
def list_(
    hub: HubOpt = None, token: TokenOpt = None, ca: CaOpt = None, output: OutputOpt = None
) -> None:
    """List pushed releases: name, version, digest, size, signing key, when pushed."""
    with connect(hub, token, ca) as client:
        rows = client.get("/v1/releases")
    if not wants_json(output):
        rows = [
            {
                **row,
                "digest": row["digest"].removeprefix("sha256:")[:12],
                "size": human_bytes(row["size"]),
                "pushed": f"{ago(row['pushed_at'])} by {row['pushed_by']}",
            }
            for row in rows
        ]
    print_rows(rows, RELEASE_COLUMNS, output)


SBOM_COLUMNS = [
    ("type", "TYPE"),
    ("name", "NAME"),
    ("version", "VERSION"),
    ("purl", "PACKAGE URL"),
    ("found_in", "FOUND IN"),
]


def _split_ref(release: str) -> tuple[str, str]:
    name, at, version = release.partition("@")
    if not at or not name or not version:
        raise typer.BadParameter(f"expected NAME@VERSION, got {release!r}", param_hint="RELEASE")
    return name, version


@app.command("sbom")
def sbom(
    release: Annotated[str, typer.Argument(help="The release: NAME@VERSION.")],
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
    files: Annotated[
        bool, typer.Option("--files", help="In the table, list every file and its SHA-256 too.")
    ] = False,
) -> None:
    """Show what is inside a pushed release: its CycloneDX SBOM, as signed in the archive.

    `--output json` prints the whole CycloneDX document; the table lists the
    packages (with their package URLs), and with --files every file's SHA-256.
    """
    name, version = _split_ref(release)
    with connect(hub, token, ca) as client:
        document = client.get(f"/v1/releases/{name}/{version}/sbom")
    if wants_json(output):
        print_json(document)
        return
    rows = []
    for component in document.get("components") or ():
        kind = component.get("type")
        if kind == "file" and not files:
            continue
        properties = component.get("properties") or ()
        found_in = next(
            (p.get("value") for p in properties if p.get("name") == "fogline:found-in"), None
        )
        sha = next((h.get("content") for h in component.get("hashes") or ()), None)
        rows.append(
            {
                "type": kind,
                "name": component.get("name"),
                "version": component.get("version") or (f"sha256:{sha[:12]}" if sha else None),
                "purl": component.get("purl"),
                "found_in": found_in,
            }
        )
    rows.sort(key=lambda r: (r["type"] == "file", str(r["name"])))
    print_rows(rows, SBOM_COLUMNS, output)
    components = document.get("components") or ()
    counted = sum(1 for c in components if c.get("type") == "file")
    err_console.print(
        f"{name}@{version}: {len(components) - counted} packages, {counted} files",
        highlight=False,
    )


@app.command("rm")
def remove(
    release: Annotated[str, typer.Argument(help="The release: NAME@VERSION.")],
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
) -> None:
    """Remove a pushed release and its archive from the hub.

    Refused while a deployment pins it, a device is served it (or was just
    before, and may roll back to it) or an active rollout could restore it.
    """
    name, version = _split_ref(release)
    with connect(hub, token, ca) as client:
        removed = client.delete(f"/v1/releases/{name}/{version}")
    err_console.print(
        f"release {removed['name']}@{removed['version']} removed ({removed['digest'][:19]}…)",
        highlight=False,
    )
