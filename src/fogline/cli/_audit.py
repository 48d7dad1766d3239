"""`fogline audit ls|verify|head`: who did what to the fleet, and is the record whole."""

from typing import TYPE_CHECKING, Annotated, Any, Final

import orjson
import typer

from fogline._errors import FoglineError

from ._client import HubClient
from ._common import (
    CaOpt,
    HubOpt,
    OutputOpt,
    TokenOpt,
    connect,
    console,
    print_json,
    print_rows,
    wants_json,
)

if TYPE_CHECKING:
    from fogline.security import ChainBreak, ChainEntry

app = typer.Typer(help="The audit trail: every change to the fleet, hash-chained.")
_PAGE: Final = 1000  # the hub's largest page
# Before and after are whole documents: the table says they are there.
_LONG_VALUE_CHARS: Final = 200


def _value_text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_value_text(v)}" for k, v in value.items()) or "(none)"
    if isinstance(value, list):
        return ", ".join(_value_text(v) for v in value) or "(none)"
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()  # numbers, booleans: as JSON writes them


def detail_text(detail: dict[str, Any]) -> str:
    """`deployments: web=create · devices changed: 1`: every field, in words, uncut.

    Fields are joined with ` · `: reasons often hold `;` and `,` themselves.
    """
    parts = []
    # The target's state around the change goes last: it is the longest.
    ordered = sorted(detail.items(), key=lambda item: item[0] in ("before", "after"))
    for key, value in ordered:
        if value in (None, [], {}):  # nothing to say: `remove: (none)` is noise
            continue
        text = _value_text(value)
        if len(text) > _LONG_VALUE_CHARS:
            text = f"({len(text)} characters: see -o json)"
        parts.append(f"{key.replace('_', ' ')}: {text}")
    return " · ".join(parts)


@app.command("ls")
def ls(
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
    since: Annotated[
        str | None, typer.Option(help="A duration (1h, 30m) or an ISO 8601 timestamp.")
    ] = None,
    actor: Annotated[
        str | None, typer.Option(help="Only this actor: admin, token:NAME, device:NAME, hub.")
    ] = None,
    action: Annotated[
        str | None, typer.Option(help="Only this action, or a prefix ending in * (rollout.*).")
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=_PAGE, help="At most this many (the newest).")
    ] = 200,
) -> None:
    """List audit entries, oldest first."""
    params: dict[str, str | int] = {"limit": limit}
    for key, value in (("since", since), ("actor", actor), ("action", action)):
        if value:
            params[key] = value
    with connect(hub, token, ca) as client:
        rows = client.get("/v1/audit", params=params)
    if not wants_json(output):
        rows = [
            {
                **row,
                "at": str(row["at"]).split(".")[0].removesuffix("Z") + "Z",
                "details": detail_text(row["detail"] or {}),
            }
            for row in rows
        ]
    print_rows(
        rows,
        [
            ("at", "AT (UTC)"),
            ("actor", "WHO"),
            ("source", "FROM"),
            ("action", "ACTION"),
            ("target", "TARGET"),
            ("outcome", "OUTCOME"),
            ("details", "DETAILS"),
        ],
        output,
    )


def _parse_anchor(text: str) -> tuple[int, str]:
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64:
        raise typer.BadParameter("expected SEQ:HASH, as `fogline audit head` prints it")
    return int(seq), digest.lower()


def _verify(client: HubClient, anchor: tuple[int, str] | None) -> tuple[int, str, int]:
    """Page through the chain from the genesis up to the head read first;
    returns that head and how many entries were checked. Entries appended
    while it reads are left for the next run.

    Raises:
        FoglineError: the chain is broken (the message names the entry).
    """
    from fogline.security import ChainVerifier

    found = client.get("/v1/audit/head")
    head_seq, head_hash = int(found["seq"]), str(found["hash"])
    verifier = ChainVerifier()
    checked = 0
    # Every page moves past at least one entry or ends the walk: bounded by the head.
    while verifier.seq < head_seq:
        page = client.get("/v1/audit", params={"after": verifier.seq, "limit": _PAGE})
        entries = [_entry(raw) for raw in page or ()]
        entries = [entry for entry in entries if entry.seq <= head_seq]
        if not entries:
            break
        for entry in entries:
            broken = verifier.feed(entry)
            if broken is None and anchor is not None and anchor[0] == entry.seq != 0:
                broken = _against_anchor(entry, anchor)
            if broken is not None:
                raise FoglineError(str(broken))
            checked += 1
    broken = verifier.check_head(head_seq, head_hash)
    if broken is not None:
        raise FoglineError(str(broken))
    if anchor is not None and anchor[0] > head_seq:
        raise FoglineError(
            f"the anchor is entry {anchor[0]}, the chain ends at {head_seq}: entries were removed"
        )
    return head_seq, head_hash, checked


def _against_anchor(entry: "ChainEntry", anchor: tuple[int, str]) -> "ChainBreak | None":
    from fogline.security import ChainBreak

    if entry.hash == anchor[1]:
        return None
    return ChainBreak(entry.seq, "not the anchor's hash: the chain was rewritten since")


def _entry(raw: Any) -> "ChainEntry":
    from fogline.security import ChainEntry

    try:
        return ChainEntry.from_json(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise FoglineError(
            f"the hub served an audit entry without its chain fields ({exc})"
        ) from exc


@app.command("verify")
def verify(
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
    anchor: Annotated[
        str | None,
        typer.Option(
            help="SEQ:HASH from an earlier `fogline audit head`, kept outside the hub: "
            "the chain must still pass through it."
        ),
    ] = None,
) -> None:
    """Check the whole hash chain: exit 1 naming the first edited, deleted or
    reordered entry."""
    wanted = _parse_anchor(anchor) if anchor else None
    with connect(hub, token, ca) as client:
        head_seq, head_hash, checked = _verify(client, wanted)
    if wants_json(output):
        print_json({"ok": True, "entries": checked, "seq": head_seq, "hash": head_hash})
        return
    console.print(f"audit chain intact: {checked} entries, head {head_seq}:{head_hash}")


@app.command("head")
def head(
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Print the chain's head as SEQ:HASH; keep it outside the hub to anchor the chain."""
    with connect(hub, token, ca) as client:
        found = client.get("/v1/audit/head")
    if wants_json(output):
        print_json(found)
        return
    console.print(f"{found['seq']}:{found['hash']}", highlight=False)
