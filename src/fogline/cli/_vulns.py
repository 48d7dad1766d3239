"""`fogline vulndb import|status` and `fogline vulns ls|devices`: the offline
vulnerability database (OSV files) and what it finds in the fleet.

    fogline vulndb import PyPI-all.zip          # one zip per ecosystem, as OSV publishes
    fogline vulndb import ./advisories/         # or a directory of OSV *.json files
    fogline vulndb status                       # what was imported, per ecosystem, how old
    fogline vulns ls                            # advisories affecting deployed releases
    fogline vulns ls --advisory GHSA-xxxx       # which devices run something affected by it
    fogline vulns devices GHSA-xxxx             # just the devices, one per line

No network call is ever made: the hub only knows what was imported.
Errors are one line on stderr (exit 1); data only on stdout.
"""

from pathlib import Path
from typing import Annotated, Any, Final

import typer

from fogline._errors import FoglineError

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

vulndb_app = typer.Typer(
    help="The offline vulnerability database: import OSV files, see what is there.",
    no_args_is_help=True,
)
vulns_app = typer.Typer(
    help="Advisories that affect releases in the fleet, and the devices that run them.",
    no_args_is_help=True,
)
# Imports parse up to a million advisories and scan the fleet before answering.
_IMPORT_TIMEOUT_S: Final = 600.0

FINDING_COLUMNS = [
    ("advisory", "ADVISORY"),
    ("severity", "SEVERITY"),
    ("published", "PUBLISHED"),
    ("release", "RELEASE"),
    ("package", "PACKAGE"),
    ("running", "RUNNING"),
    ("targeted", "TARGETED"),
    ("blocked_by", "BLOCKED BY"),
    ("summary", "SUMMARY"),
]
IMPORT_COLUMNS = [
    ("imported_at", "IMPORTED"),
    ("source", "SOURCE"),
    ("advisories", "ADVISORIES"),
    ("stored", "NEW"),
    ("ecosystems", "ECOSYSTEMS"),
    ("newest_modified", "NEWEST ADVISORY"),
    ("imported_by", "BY"),
]


def _read_source(path: Path) -> bytes:
    from fogline.vulns import MAX_IMPORT_BYTES, zip_directory

    try:
        if path.is_dir():
            return zip_directory(path)
        if path.stat().st_size > MAX_IMPORT_BYTES:
            raise FoglineError(f"{path}: larger than {MAX_IMPORT_BYTES} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise FoglineError(f"{exc.filename or path}: {exc.strerror or exc}") from exc


@vulndb_app.command("import")
def import_(
    source: Annotated[
        Path, typer.Argument(help="An OSV zip (e.g. PyPI's all.zip) or a directory of OSV *.json.")
    ],
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Import OSV advisories into the hub, then list what they find in deployed releases.

    All or nothing: a malformed file refuses the import, naming the file and
    the reason. An advisory the hub holds in a newer version is kept.
    """
    data = _read_source(source)
    with connect(hub, token, ca) as client:
        result = client.post(
            "/v1/vulndb/imports",
            params={"source": source.name or str(source)},
            content=data,
            headers={"content-type": "application/zip"},
            timeout=_IMPORT_TIMEOUT_S,
        )
    imported = result["imported"]
    err_console.print(
        f"imported {imported['advisories']} advisories from {imported['source']} "
        f"({imported['stored']} new or updated); "
        f"{len(result['findings'])} findings in deployed releases",
        highlight=False,
    )
    _print_findings(result["findings"], output)


@vulndb_app.command("status")
def status(
    hub: HubOpt = None, token: TokenOpt = None, ca: CaOpt = None, output: OutputOpt = None
) -> None:
    """What was imported, how many advisories per ecosystem, and how old the data is."""
    with connect(hub, token, ca) as client:
        shown = client.get("/v1/vulndb")
    if wants_json(output):
        print_json(shown)
        return
    rows = [
        {
            **row,
            "imported_at": ago(row["imported_at"]),
            "newest_modified": ago(row["newest_modified"]),
        }
        for row in shown["imports"]
    ]
    print_rows(rows, IMPORT_COLUMNS, output)
    per = ", ".join(f"{eco} {count}" for eco, count in shown["ecosystems"].items()) or "none"
    err_console.print(
        f"{shown['advisories']} advisories ({per}), {shown['withdrawn']} withdrawn; "
        f"newest advisory modified {ago(shown['newest_modified'])}, "
        f"last import {ago(shown['last_import'])}",
        highlight=False,
    )


def _print_findings(findings: list[dict[str, Any]], output: Any) -> None:
    if wants_json(output):
        print_json(findings)
        return
    rows = [
        {
            **f,
            "severity": f"{f['severity']} {f['score']}" if f["score"] is not None else "unknown",
            "published": (f["published"] or f["modified"])[:10],
            "summary": f["summary"][:80],
        }
        for f in findings
    ]
    print_rows(rows, FINDING_COLUMNS, output)


@vulns_app.command("ls")
def list_(
    advisory: Annotated[
        str | None, typer.Option("--advisory", help="Only this advisory (an OSV id).")
    ] = None,
    all_releases: Annotated[
        bool, typer.Option("--all", help="Every pushed release, not only deployed ones.")
    ] = False,
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Every advisory that affects a deployed release, newest first, with the
    number of devices running it (and targeted by a deployment)."""
    params: dict[str, str] = {"all": "true" if all_releases else "false"}
    if advisory:
        params["advisory"] = advisory
    with connect(hub, token, ca) as client:
        findings = client.get("/v1/vulns", params=params)
    _print_findings(findings, output)


@vulns_app.command("devices")
def devices(
    advisory: Annotated[str, typer.Argument(help="The advisory (an OSV id).")],
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """The devices that run or are targeted with a release affected by ADVISORY, one per line."""
    with connect(hub, token, ca) as client:
        findings = client.get("/v1/vulns", params={"advisory": advisory})
    names = sorted({name for f in findings for name in f["devices"]})
    if wants_json(output):
        print_json(names)
        return
    for name in names:
        typer.echo(name)
    err_console.print(f"{len(names)} devices affected by {advisory}", highlight=False)
