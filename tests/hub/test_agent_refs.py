"""At plan/apply, the agent's own release (kind: agent) carries no module config or env."""

from typing import Any

import pytest

from fogline.hub.releases import check_agent_refs
from fogline.manifest import ManifestError, Origin


def document(**entry: Any) -> dict[str, Any]:
    """A Deployment document as `resolve_module_refs` leaves it."""
    module = {
        "name": "fogline-agent",
        "release": "fogline-agent@0.2.0",
        "version": "0.2.0",
        "digest": "sha256:" + "a" * 64,
        **entry,
    }
    return {
        "apiVersion": "fogline.dev/v1",
        "kind": "Deployment",
        "metadata": {"name": "agents"},
        "spec": {"selector": {}, "modules": [module]},
    }


def test_an_agent_release_without_config_or_env_passes() -> None:
    check_agent_refs(document(), release_kind=lambda digest: "agent")
    check_agent_refs(document(config={}), release_kind=lambda digest: "agent")  # empty: nothing set


def test_config_or_env_is_left_to_releases_that_read_them() -> None:
    check_agent_refs(document(config={"a": 1}), release_kind=lambda digest: "service")
    check_agent_refs(document(env={"A": "b"}), release_kind=lambda digest: None)  # kind unknown


def test_config_and_env_on_the_agent_release_are_refused_at_their_fields() -> None:
    origin = Origin("fleet.yaml", 3, 1)
    with pytest.raises(ManifestError) as caught:
        check_agent_refs(
            document(config={"a": 1}, env={"A": "b"}),
            origin=origin,
            release_kind=lambda digest: "agent",
        )
    problems = caught.value.problems
    assert [p.path for p in problems] == ["spec.modules[0].config", "spec.modules[0].env"]
    assert all(p.file == "fleet.yaml" and p.line == 3 for p in problems)
    assert "kind: agent" in problems[0].reason and "agent run" in problems[0].reason
