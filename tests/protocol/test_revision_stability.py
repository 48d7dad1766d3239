"""A fleet must not re-apply on a hub upgrade: the documents the hub compiles
through the typed contract have the revisions the hub gave them before it.

The golden desired_state.json, .unscoped, .empty and .rollback were written by
the hub before the contract was typed (commit "tests/protocol/golden: desired
documents as the hub compiles them before the typed contract"), from
golden/fleet.yaml with its modules resolved as an apply resolves them.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from fogline.hub._desired import TrustedKey, compile_for, plain, stored_document
from fogline.hub._validators import default_validators
from fogline.manifest import Deployment, ManifestSource, load_manifests
from fogline.protocol import RollbackMarker

from ._golden import GOLDEN, golden

KEYS = {
    "ci": TrustedKey("Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE="),
    "web-team": TrustedKey("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", ("web-*",)),
}
CANARY = SimpleNamespace(
    id="canary",
    labels={"site": "berlin", "ring": "canary"},
    platform_labels={"fogline.dev/os": "linux"},
    reported=None,
)
PARIS = SimpleNamespace(id="paris", labels={"site": "paris"}, platform_labels={}, reported=None)


def _resolved(deployment: Deployment) -> Deployment:
    """The deployment as an apply stores it: each module entry with the
    version, digest and signature of the release it names."""
    modules: list[dict[str, Any]] = []
    for entry in deployment.modules:
        module = dict(plain(entry))
        name, _, version = str(module["release"]).partition("@")
        digest = "sha256:" + ("a" if name == "thermo" else "b") * 64
        module.update(version=version, digest=digest)
        module["signature"] = {
            "digest": digest,
            "keyid": "ci",
            "name": name,
            "signature": "c2lnbmF0dXJl",
            "version": version,
        }
        modules.append(module)
    return Deployment(
        deployment.name,
        deployment.selector,
        deployment.priority,
        deployment.config,
        tuple(modules),
        deployment.pipelines,
        deployment.rollout,
        deployment.drift,
    )


@pytest.fixture(scope="module")
def deployments() -> list[Deployment]:
    source = ManifestSource("fleet.yaml", (GOLDEN / "fleet.yaml").read_text())
    loaded = load_manifests([source], validators=default_validators())
    return [_resolved(d) for d in loaded.deployments]


@pytest.mark.parametrize(
    ("golden_name", "device", "keys"),
    [
        ("desired_state.json", CANARY, KEYS),
        ("desired_state.unscoped.json", CANARY, {"ci": KEYS["ci"]}),
        ("desired_state.empty.json", PARIS, KEYS),
    ],
)
def test_a_document_compiled_before_the_typed_contract_keeps_its_revision(
    deployments: list[Deployment], golden_name: str, device: Any, keys: dict[str, TrustedKey]
) -> None:
    before = golden(golden_name)
    after = compile_for(deployments, device, keys)
    assert after.revision == before["revision"]
    assert after.document == before["document"]


def test_a_rollback_marked_document_keeps_its_revision() -> None:
    # As the rollout engine marks a previous document that goes down a version.
    previous = stored_document(golden("desired_state.json")["document"])
    assert previous is not None
    marked = previous.model_copy(update={"rollback": RollbackMarker(rollout="r-0123456789ab")})
    assert marked.revision() == golden("desired_state.rollback.json")["revision"]
