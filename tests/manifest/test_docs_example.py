"""Every YAML block of docs/manifests.md passes the validation `fogline plan` runs.

`fogline plan` loads the files with the hub's block validators (modules,
pipelines, rollout policy) before it looks at the database; that is the
check here. Pinning `release:` to a pushed release needs a hub with that
release, which a doc page cannot have: the examples assume it was pushed.
"""

import textwrap
from pathlib import Path

import pytest
import yaml

from fogline.hub._validators import default_validators
from fogline.manifest import (
    ManifestError,
    ManifestSet,
    ManifestSource,
    compile_desired_state,
    load_manifests,
)
from tests.support.doc_blocks import DocBlock, doc_blocks

DOC = Path(__file__).resolve().parents[2] / "docs" / "manifests.md"
YAML_BLOCKS = [block for block in doc_blocks(DOC) if block.lang in ("yaml", "yml")]


def _as_manifest(block: DocBlock) -> str:
    """The block as manifest text: fragments are wrapped into the document they belong to."""
    if block.kind is None:
        return block.text
    if block.kind == "spec":  # part of a Deployment's spec
        fragment = yaml.safe_load(block.text)
        assert isinstance(fragment, dict), f"{block.where}: a spec fragment must be a mapping"
        header = "apiVersion: fogline.dev/v1\nkind: Deployment\nmetadata: {name: doc-fragment}\n"
        header += "spec:\n" + ("" if "selector" in fragment else "  selector: {}\n")
        return header + textwrap.indent(block.text, "  ")
    raise AssertionError(f"{block.where}: unknown doc-check kind {block.kind!r} (known: spec)")


def check_block(block: DocBlock) -> ManifestSet:
    try:
        return load_manifests(
            [ManifestSource(block.where, _as_manifest(block))], validators=default_validators()
        )
    except ManifestError as exc:
        raise AssertionError(f"the YAML block at {block.where} is refused:\n{exc}") from None


def test_the_page_has_its_example_and_a_fragment() -> None:
    # Guards the extraction itself: a broken fence regex would check nothing.
    assert len(YAML_BLOCKS) >= 2
    assert YAML_BLOCKS[0].kind is None and "kind: Deployment" in YAML_BLOCKS[0].text
    assert any(block.kind == "spec" for block in YAML_BLOCKS)


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=[block.where for block in YAML_BLOCKS])
def test_every_yaml_block_passes_plan_validation(block: DocBlock) -> None:
    manifests = check_block(block)
    assert manifests.deployments or manifests.claims or manifests.release_keys


def test_a_fragment_is_checked_as_what_it_is(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- doc-check: spec -->\n```yaml\nmodules:\n  - {name: thermo, version: 1.4.0}\n```\n"
    )
    [block] = doc_blocks(page)
    with pytest.raises(AssertionError, match=r"spec.modules\[0\].version: unknown field"):
        check_block(block)
    page.write_text("<!-- doc-check: nonsense -->\n```yaml\na: 1\n```\n")
    with pytest.raises(AssertionError, match="unknown doc-check kind 'nonsense'"):
        check_block(doc_blocks(page)[0])


def test_the_main_example_layers_as_the_page_describes() -> None:
    manifests = check_block(YAML_BLOCKS[0])
    assert [d.name for d in manifests.deployments] == ["base", "berlin-arm"]
    assert [c.name for c in manifests.claims] == ["berlin-line-a"]
    assert [k.name for k in manifests.release_keys] == ["release-2030"]
    assert manifests.release_keys[0].modules == ("thermo", "thermo-*")
    # As the hub labels a 64-bit ARM node (the page says arch values are normalized).
    labels = {"site": "berlin", "fogline.dev/arch": "arm64"}
    doc = compile_desired_state(manifests.deployments, labels).document
    assert doc["config"] == {"sampling": {"rate": 1, "unit": "s"}}
    assert doc["modules"] == ({"name": "thermo", "release": "thermo@1.5.0-rc1"},)
    assert [p["name"] for p in doc["pipelines"]] == ["temperatures"]
    assert doc["drift"] == "correct"
