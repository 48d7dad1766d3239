"""A plan as people read it: one line per module version, YAML blocks for the rest.

    deployment/web  update

    1 device changes
      node1  3be806422cf6 → 47c9b1d90104
          ~ config.rate_hz: 3 → 4
          ~ modules[thermo-filter]: 1.1.0 → 1.2.0
          ~ pipelines[temps].steps:
              - - filter: value > 30
              + - filter: value > 31
                  id: hot

What a module entry carries so a node can fetch and verify it (digest,
signature, release reference) follows from its version: it is never shown.
"""

import difflib
import re
from collections import defaultdict
from collections.abc import Iterator
from typing import Any, Final

import yaml

from fogline.manifest import ManifestError, ManifestSource

from ._common import console, safe_text
from ._format import durations_in, plural

_MODULE_PATH: Final = re.compile(r"^modules\[(?P<name>[^\]]+)\](?P<rest>.*)$")
# Fields of a compiled module entry that say where its bytes are and how to
# check them: all implied by name and version.
_RELEASE_FIELDS: Final = frozenset({"name", "version", "release", "digest", "signature", "url"})
_INLINE_MAX: Final = 60
_MARKS: Final = {
    "add": "[green]+[/green]",
    "remove": "[red]-[/red]",
    "change": "[yellow]~[/yellow]",
}


def _short(revision: str | None) -> str:
    return "-" if revision is None else revision.removeprefix("sha256:")[:12]


class _BlockDumper(yaml.SafeDumper):
    """Block YAML with list items indented under their key, as people write it."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _yaml_block(value: Any) -> list[str]:
    text = yaml.dump(
        value, Dumper=_BlockDumper, sort_keys=False, default_flow_style=False, width=88
    )
    return text.removesuffix("...\n").splitlines()


def _inline(value: Any, limit: int = _INLINE_MAX) -> str | None:
    """`value` on one line when it is short (text of one line always is); None
    when it needs a block."""
    if isinstance(value, str) and "\n" not in value:
        return value
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    text = text.removesuffix("...").strip()
    return text if len(text) <= limit and "\n" not in text else None


def _key_text(value: Any) -> Any:
    """A release key as its id (`ed25519:…`), not 44 characters of base64."""
    from fogline.artifact import ReleaseKeyError, key_id, load_public_key

    if not isinstance(value, str):
        return value
    try:
        return key_id(load_public_key(value))
    except ReleaseKeyError:
        return value


def _readable(path: str, value: Any) -> Any:
    """Values whose raw form says nothing to a person, in words."""
    if path == "deployments" and isinstance(value, list):
        names = [
            f"{d.get('name')} (priority {d.get('priority', 0)})"
            for d in value
            if isinstance(d, dict)
        ]
        return ", ".join(names) or "(none)"
    if path == "releaseKeys" and isinstance(value, dict):
        return {name: _key_text(key) for name, key in value.items()}
    if path.startswith("releaseKeys"):
        return _key_text(value)
    return value


def _value_lines(path: str, op: str, old: Any, new: Any) -> tuple[str, list[str]]:
    """The text after `path:` on the change's own line, and the block below it."""
    old, new = _readable(path, old), _readable(path, new)
    if op != "change":
        value = new if op == "add" else old
        inline = _inline(value)
        return (inline, []) if inline is not None else ("", _yaml_block(value))
    old_inline, new_inline = _inline(old), _inline(new)
    if (
        old_inline is not None
        and new_inline is not None
        and (len(old_inline) + len(new_inline) <= _INLINE_MAX or isinstance(new, str))
    ):
        return f"{old_inline} → {new_inline}", []
    return "", _diff_block(_yaml_block(old), _yaml_block(new))


def _diff_block(old: list[str], new: list[str]) -> list[str]:
    """`- `/`+ ` marked lines of two YAML blocks, with the unchanged lines between."""
    lines: list[str] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            lines += [f"  {line}" for line in old[i1:i2]]
            continue
        lines += [f"- {line}" for line in old[i1:i2]]
        lines += [f"+ {line}" for line in new[j1:j2]]
    return lines


def _module_summary(entry: Any) -> str:
    return str(entry.get("version", "?")) if isinstance(entry, dict) else "?"


def _module_lines(name: str, changes: list[dict[str, Any]]) -> Iterator[tuple[str, str, list[str]]]:
    """One module's changes: its version first, then anything else about it."""
    path = f"modules[{name}]"
    for change in changes:
        if change["path"] != path:
            continue
        entry = change["new"] if change["op"] == "add" else change["old"]
        rest = {k: v for k, v in entry.items() if k not in _RELEASE_FIELDS}
        yield change["op"], f"{path}: {_module_summary(entry)}", _yaml_block(rest) if rest else []
    fields = {c["path"][len(path) :]: c for c in changes if c["path"] != path}
    version = fields.get(".version")
    if version is not None:
        yield "change", f"{path}: {version['old']} → {version['new']}", []
    elif ".digest" in fields:
        digest = fields[".digest"]
        yield (
            "change",
            f"{path}: another archive ({_short(digest['old'])} → {_short(digest['new'])})",
            [],
        )
    for rest, change in fields.items():
        if rest.lstrip(".").split(".")[0].split("[")[0] in _RELEASE_FIELDS:
            continue
        text, block = _value_lines(change["path"], change["op"], change["old"], change["new"])
        yield change["op"], f"{change['path']}: {text}".rstrip(), block


def change_lines(changes: list[dict[str, Any]]) -> list[tuple[str, str, list[str]]]:
    """(op, `path: value` line, block lines below it) for each change a person should see."""
    by_module: dict[str, list[dict[str, Any]]] = defaultdict(list)
    out: list[tuple[str, str, list[str]]] = []
    for change in changes:
        match = _MODULE_PATH.match(change["path"])
        if match:
            if match["name"] not in by_module:
                out.append(("module", match["name"], []))  # its place in the order
            by_module[match["name"]].append(change)
            continue
        text, block = _value_lines(change["path"], change["op"], change["old"], change["new"])
        out.append((change["op"], f"{change['path']}: {text}".rstrip(), block))
    lines: list[tuple[str, str, list[str]]] = []
    for op, text, block in out:
        if op == "module":
            lines += list(_module_lines(text, by_module[text]))
        else:
            lines.append((op, text, block))
    return lines


def _block_line(line: str) -> str:
    text = safe_text(line)
    if line.startswith("+ "):
        return f"[green]{text}[/green]"
    if line.startswith("- "):
        return f"[red]{text}[/red]"
    return text


def print_plan(plan: dict[str, Any]) -> None:
    """Deployments, claims and keys the change touches, then each group of
    devices that changes the same way, field by field."""
    for change in plan["deployments"]:
        style = {"create": "green", "update": "yellow", "delete": "red"}.get(
            change["action"], "dim"
        )
        name = safe_text(change["name"])
        console.print(f"deployment/{name}  [{style}]{change['action']}[/{style}]")
    for kind, names in (
        ("claim", plan.get("claims", [])),
        ("releasekey", plan.get("release_keys", [])),
    ):
        for name in names:
            console.print(f"{kind}/{safe_text(name)}  [cyan]apply[/cyan]")
    devices = plan["devices"]
    if not devices:
        console.print("No device's desired state changes.")
        return
    verb = "changes" if len(devices) == 1 else "change"
    console.print(f"\n[bold]{plural(len(devices), 'device')} {verb}[/bold]")
    # Devices with the same field-level diff are shown once, as a group.
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for device in devices:
        groups[repr(device["changes"])].append(device)
    for members in groups.values():
        names = safe_text(", ".join(d["name"] for d in members[:8]))
        more = f" and {len(members) - 8} more" if len(members) > 8 else ""
        first = members[0]
        console.print(
            f"  [bold]{names}{more}[/bold]  {_short(first['from_revision'])} → "
            f"{_short(first['to_revision'])}",
            highlight=False,
        )
        for op, text, block in change_lines(first["changes"]):
            console.print(f"      {_MARKS[op]} {safe_text(text)}", highlight=False, soft_wrap=True)
            for line in block:
                console.print(f"          {_block_line(line)}", highlight=False, soft_wrap=True)


def print_rollout_policies(body: dict[str, Any], plan: dict[str, Any]) -> None:
    """One line per changed deployment: the rollout policy its devices would follow."""
    # Imported here: it brings the manifest schema (pydantic and the wire
    # models), which `fogline apply` does not need (fogline.cli._commands).
    from fogline.manifest import load_manifests

    try:
        manifests = load_manifests([ManifestSource(f["name"], f["text"]) for f in body["files"]])
    except ManifestError:  # the hub accepted them; a local parse problem only loses this hint
        return
    policies = {d.name: d.rollout for d in manifests.deployments}
    for change in plan["deployments"]:
        if change["action"] not in ("create", "update") or change["name"] not in policies:
            continue
        block = policies[change["name"]]
        if not block:
            text = "one wave of all devices, no health gate (no spec.rollout)"
        else:
            raw = block.get("waves")
            waves = ", ".join(str(w) for w in raw) if isinstance(raw, list | tuple) else "100%"
            text = f"waves [{waves}], onFailure {block.get('onFailure', 'pause')}"
        line = f"deployment/{change['name']}  rollout: {durations_in(text)}"
        console.print(safe_text(line), highlight=False)
