"""Compiling the deployments that select a device into its desired state.

Layering (lowest priority first, so higher layers override lower ones):

* `config` is deep-merged: mappings merge key by key, anything else is
  replaced, and a null in a higher layer deletes the key.
* `modules` and `pipelines` merge by `name`: a higher layer's entry
  replaces the whole entry of the same name. Output lists are sorted by name.
* `drift` comes from the highest layer that sets it, else "report".
* `sensors`: ingest tokens merge by `name`, MQTT sensor accounts by
  `username`, a higher layer's entry replacing the lower one's. The key is
  absent when no layer declares sensors (so documents compiled before it
  existed keep their revisions).

Layers of equal priority are applied in name order; the loader rejects
overlapping ones anyway, so that order only matters for hand-built input.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from fogline.protocol._canonical import revision_of as _protocol_revision_of

from ._json import JsonValue, canonical_json, freeze, thaw
from ._model import Deployment

DEFAULT_DRIFT: Final = "report"


@dataclass(frozen=True, slots=True)
class DesiredState:
    """What one device should run; `revision` is the hash of `document`.

    `document` is read-only; `canonical_json(state.document)` gives the bytes
    that `revision` ("sha256:<hex>") hashes, which also serve as the ETag.
    """

    revision: str
    document: Mapping[str, JsonValue]


revision_of = _protocol_revision_of  # part of the wire contract: see fogline.protocol


def compile_desired_state(
    deployments: Iterable[Deployment], labels: Mapping[str, str]
) -> DesiredState:
    """Layer the deployments that select `labels` into one desired-state document.

    The result does not depend on the order of `deployments`; a device that
    nothing selects gets an empty document, with a revision like any other.
    """
    layers = sorted(
        (d for d in deployments if d.selector.matches(labels)), key=lambda d: (d.priority, d.name)
    )
    layers = _break_ties(layers)
    config: dict[str, Any] = {}
    modules: dict[str, Any] = {}
    pipelines: dict[str, Any] = {}
    drift = DEFAULT_DRIFT
    tokens: dict[str, Any] = {}
    users: dict[str, Any] = {}
    declares_sensors = False
    for layer in layers:
        if layer.sensors:
            declares_sensors = True
            block: Any = thaw(layer.sensors)  # shaped by the schema
            tokens.update((t["name"], t) for t in block.get("ingest", {}).get("tokens", []))
            users.update((u["username"], u) for u in block.get("mqtt", {}).get("users", []))
        _merge_into(config, layer.config)
        modules.update((str(m["name"]), thaw(m)) for m in layer.modules)
        pipelines.update((str(p["name"]), thaw(p)) for p in layer.pipelines)
        if layer.drift is not None:
            drift = layer.drift
    document = {
        "config": config,
        "deployments": [{"name": d.name, "priority": d.priority} for d in layers],
        "drift": drift,
        "modules": [modules[name] for name in sorted(modules)],
        "pipelines": [pipelines[name] for name in sorted(pipelines)],
    }
    if declares_sensors:
        document["sensors"] = {
            "ingest": {"tokens": [tokens[name] for name in sorted(tokens)]},
            "mqtt": {"users": [users[name] for name in sorted(users)]},
        }
    return DesiredState(revision_of(document), freeze(document))  # type: ignore[arg-type]


def _break_ties(layers: list[Deployment]) -> list[Deployment]:
    # Two deployments with one name and priority cannot come from one valid
    # manifest set, but callers may pass anything: order them by content so
    # the result still never depends on the input order.
    keys = [(d.priority, d.name) for d in layers]
    if len(set(keys)) == len(keys):
        return layers
    return sorted(layers, key=lambda d: (d.priority, d.name, canonical_json(d.to_document())))


def _merge_into(base: dict[str, Any], layer: Mapping[str, Any]) -> None:
    for key, value in layer.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, Mapping):
            below = base.get(key)
            merged = below if isinstance(below, dict) else {}
            _merge_into(merged, value)
            base[key] = merged
        else:
            base[key] = thaw(value)
