"""The example in docs/manifests.md stays valid and compiles as the text says."""

import re
from pathlib import Path

from fogline.manifest import ManifestSource, compile_desired_state, load_manifests

DOC = Path(__file__).resolve().parents[2] / "docs" / "manifests.md"


def test_documented_example_loads_and_layers_as_described() -> None:
    example = re.search(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert example
    manifests = load_manifests([ManifestSource("example.yaml", example.group(1))])
    assert [d.name for d in manifests.deployments] == ["base", "berlin-arm"]
    assert [c.name for c in manifests.claims] == ["berlin-line-a"]
    assert [k.name for k in manifests.release_keys] == ["release-2030"]
    assert manifests.release_keys[0].modules == ("thermo", "thermo-*")
    labels = {"site": "berlin", "fogline.dev/arch": "arm64"}
    doc = compile_desired_state(manifests.deployments, labels).document
    assert doc["config"] == {"sampling": {"rate": 1, "unit": "s"}}
    assert doc["modules"] == ({"name": "thermo", "version": "1.5.0-rc1"},)
    assert doc["drift"] == "correct"
