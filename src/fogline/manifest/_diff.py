"""Field-level differences between two desired-state documents, for `plan`."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ._compile import compile_desired_state
from ._json import thaw
from ._paths import item_segment, key_segment

# Top-level lists whose entries are known by their `name`: a change shows as
# modules[thermo].version, not as a different list.
KEYED_LISTS = ("modules", "pipelines")
EMPTY_STATE = compile_desired_state((), {})


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One difference: `old` is None for "add", `new` is None for "remove"."""

    path: str
    op: Literal["add", "remove", "change"]
    old: Any = None
    new: Any = None


def diff_documents(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[FieldChange]:
    """Return the changes that turn `old` into `new`, in a deterministic order.

    Mappings are compared key by key; a key present on one side only is one
    add or remove of its whole value. Top-level `modules` and `pipelines`
    entries are matched by name (`modules[thermo].version`); other lists
    and scalars change as a whole. `old=None` (a device without a desired
    state yet) reads as the empty desired state, so a new device's plan
    lists `modules[thermo]` and `config.x` additions rather than whole blocks.
    """
    changes: list[FieldChange] = []
    _diff_mappings(EMPTY_STATE.document if old is None else old, new, "", changes, top=True)
    return changes


def _same(a: Any, b: Any) -> bool:
    # 1, 1.0 and True are equal in Python but not in the canonical JSON.
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if _is_list(a) and _is_list(b):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return repr(a) == repr(b)  # -0.0 == 0.0, but not in the canonical JSON
    return type(a) is type(b) and a == b


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _by_name(entries: Any) -> dict[str, Any] | None:
    """Index a list by entry name, or None if it is not a list of named entries."""
    if not _is_list(entries):
        return None
    index: dict[str, Any] = {}
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            return None
        if entry["name"] in index:
            return None
        index[entry["name"]] = entry
    return index


def _diff_mappings(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    prefix: str,
    out: list[FieldChange],
    *,
    top: bool = False,
) -> None:
    for key in sorted(old.keys() | new.keys()):
        path = prefix + key_segment(key, first=not prefix)
        if key not in new:
            out.append(FieldChange(path, "remove", old=thaw(old[key])))
        elif key not in old:
            out.append(FieldChange(path, "add", new=thaw(new[key])))
        elif top and key in KEYED_LISTS and _keyed_diff(old[key], new[key], path, out):
            continue
        else:
            _diff_values(old[key], new[key], path, out)


def _keyed_diff(old: Any, new: Any, path: str, out: list[FieldChange]) -> bool:
    old_index, new_index = _by_name(old), _by_name(new)
    if old_index is None or new_index is None:
        return False
    for name in sorted(old_index.keys() | new_index.keys()):
        item_path = path + item_segment(name)
        if name not in new_index:
            out.append(FieldChange(item_path, "remove", old=thaw(old_index[name])))
        elif name not in old_index:
            out.append(FieldChange(item_path, "add", new=thaw(new_index[name])))
        else:
            _diff_values(old_index[name], new_index[name], item_path, out)
    return True


def _diff_values(old: Any, new: Any, path: str, out: list[FieldChange]) -> None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        _diff_mappings(old, new, path, out)
    elif not _same(old, new):
        out.append(FieldChange(path, "change", old=thaw(old), new=thaw(new)))
