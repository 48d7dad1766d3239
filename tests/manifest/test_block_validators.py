"""The extension point for module, pipeline and rollout schemas owned elsewhere."""

from collections.abc import Mapping
from typing import Any

import pytest

from fogline.manifest import BlockError, BlockValidators, ManifestError, load_manifests

from ._support import deployment_doc, source

TEXT = deployment_doc(
    "web",
    """
    selector: {}
    modules:
      - name: thermo
        version: 1.0.0
        health:
          timeout: soon
      - name: camera
        version: 2.0.0
    pipelines:
      - name: temps
        steps: []
    rollout:
      waves: [1, 200]
    """,
)


def _module(entry: Mapping[str, Any]) -> None:
    health = entry.get("health", {})
    if health.get("timeout") == "soon":
        raise BlockError(("health", "timeout"), "must be a duration (got 'soon')")


def _rollout(block: Mapping[str, Any]) -> None:
    for i, wave in enumerate(block["waves"]):
        if wave > 100:
            raise BlockError(("waves", i), f"must be a percentage (got {wave})")


def test_block_errors_are_located_at_the_exact_node() -> None:
    validators = BlockValidators(module=_module, rollout=_rollout)
    with pytest.raises(ManifestError) as caught:
        load_manifests([source(TEXT)], validators=validators)
    assert [str(p) for p in caught.value.problems] == [
        "fleet.yaml:11:18: spec.modules[0].health.timeout: must be a duration (got 'soon')",
        "fleet.yaml:18:16: spec.rollout.waves[1]: must be a percentage (got 200)",
    ]


def test_block_error_for_a_missing_field_points_at_the_nearest_ancestor() -> None:
    def needs_image(entry: Mapping[str, Any]) -> None:
        raise BlockError(("image", "digest"), "required field is missing")

    with pytest.raises(ManifestError) as caught:
        load_manifests([source(TEXT)], validators=BlockValidators(pipeline=needs_image))
    assert [str(p) for p in caught.value.problems] == [
        "fleet.yaml:15:7: spec.pipelines[0].image.digest: required field is missing"
    ]


def test_validators_see_every_entry_once_and_only_valid_documents() -> None:
    seen: list[str] = []
    broken = deployment_doc("broken", "selector: {}\npriority: x\nmodules: [{name: never}]")
    with pytest.raises(ManifestError):
        load_manifests(
            [source(TEXT + "---\n" + broken)],
            validators=BlockValidators(module=lambda entry: seen.append(str(entry["name"]))),
        )
    assert seen == ["thermo", "camera"]


def test_rollout_validator_runs_only_when_the_document_has_a_rollout() -> None:
    calls: list[Mapping[str, Any]] = []
    load_manifests(
        [source(deployment_doc("plain"))], validators=BlockValidators(rollout=calls.append)
    )
    assert calls == []


def test_without_validators_blocks_stay_opaque() -> None:
    [web] = load_manifests([source(TEXT)]).deployments
    # Frozen trees: mappings stay mappings, lists become tuples.
    assert web.rollout == {"waves": (1, 200)}
    assert [m["name"] for m in web.modules] == ["thermo", "camera"]
