"""Every example in README.md, docs/*.md and examples/README.md is checked (issue #19).

- A YAML block passes the validation `fogline plan` runs: the hub's block
  validators (modules, pipelines, rollout policy) on top of the manifest
  schema; a fragment is wrapped into the document its doc-check marker names
  (tests/support/doc_blocks.py). A `fogline-module.yaml` goes through the
  module-file validator. Pinning `release:` to a pushed release needs a hub
  with that release, which a page cannot have: the examples assume it was
  pushed (README's walk-through pushes it for real).
- Every `fogline ...` command shown in a shell or plain block names a
  command that exists, with options it has (the CLI's own click tree, as
  `--help` shows it). The README's quick start and walk-through also run for
  real (tests/test_readme_quickstart.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fogline.artifact import ModuleSpecError, load_module_spec
from fogline.hub._validators import default_validators
from fogline.manifest import (
    ManifestError,
    ManifestSet,
    ManifestSource,
    compile_desired_state,
    load_manifests,
)
from tests.support.doc_blocks import (
    ROOT,
    DocBlock,
    DocCommand,
    as_manifest,
    check_command,
    doc_blocks,
    doc_pages,
    fogline_commands,
)

BLOCKS = [block for page in doc_pages() for block in doc_blocks(page)]
YAML_BLOCKS = [block for block in BLOCKS if block.is_yaml]
COMMANDS = [command for block in BLOCKS for command in fogline_commands(block)]


def check_yaml(block: DocBlock) -> ManifestSet | None:
    """Validate a YAML block as `fogline plan` (or the module-file validator) would."""
    if block.kind == "module-file":
        try:
            load_module_spec(block.text, name=block.where)
        except ModuleSpecError as exc:
            raise AssertionError(f"the module file at {block.where} is refused:\n{exc}") from None
        return None
    try:
        return load_manifests(
            [ManifestSource(block.where, as_manifest(block))], validators=default_validators()
        )
    except ManifestError as exc:
        raise AssertionError(f"the YAML block at {block.where} is refused:\n{exc}") from None


def test_the_pages_hold_the_examples_the_test_is_about() -> None:
    # Guards the extraction itself: a broken fence or shell parser would check nothing.
    pages = {block.page.name for block in YAML_BLOCKS}
    assert {"README.md", "manifests.md", "dataplane.md", "releases.md", "rollouts.md"} <= pages
    assert {block.kind for block in YAML_BLOCKS} >= {None, "spec", "deployment", "module-file"}
    assert len(COMMANDS) >= 50
    shown = {" ".join(command.argv[:3]) for command in COMMANDS}
    for expected in ("fogline hub serve", "fogline release push", "fogline rollout status"):
        assert any(text.startswith(expected) for text in shown), expected


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=[block.where for block in YAML_BLOCKS])
def test_every_yaml_block_passes_plan_validation(block: DocBlock) -> None:
    manifests = check_yaml(block)
    if manifests is not None:
        assert (
            manifests.deployments
            or manifests.claims
            or manifests.release_keys
            or manifests.vulnerability_policies
        )


@pytest.mark.parametrize("command", COMMANDS, ids=[command.where for command in COMMANDS])
def test_every_documented_command_exists_with_its_options(command: DocCommand) -> None:
    problems = check_command(command)
    assert not problems, f"{command.where}: `{command}`:\n" + "\n".join(problems)


def _page(tmp_path: Path, text: str) -> list[DocBlock]:
    page = tmp_path / "page.md"
    page.write_text(text)
    return doc_blocks(page)


def test_a_fragment_is_checked_as_what_it_is(tmp_path: Path) -> None:
    [block] = _page(
        tmp_path,
        "<!-- doc-check: spec -->\n```yaml\nmodules:\n  - {name: thermo, version: 1.4.0}\n```\n",
    )
    with pytest.raises(AssertionError, match=r"spec.modules\[0\].version: unknown field"):
        check_yaml(block)
    [block] = _page(
        tmp_path,
        "<!-- doc-check: output -->\n```yaml\naction: {webhook: {url: ftp://x}}\n```\n",
    )
    with pytest.raises(AssertionError, match=r"outputs\[0\].action.webhook.url"):
        check_yaml(block)
    [block] = _page(tmp_path, "<!-- doc-check: module-file -->\n```yaml\nname: x\n```\n")
    with pytest.raises(AssertionError, match="version"):
        check_yaml(block)
    [block] = _page(tmp_path, "<!-- doc-check: nonsense -->\n```yaml\na: 1\n```\n")
    with pytest.raises(AssertionError, match="unknown doc-check kind 'nonsense'"):
        check_yaml(block)


def test_commands_are_read_as_a_shell_splits_them_and_checked(tmp_path: Path) -> None:
    blocks = _page(
        tmp_path,
        "```sh\n"
        "export C=$(fogline claim create --labels a=b)   # a comment --nope\n"
        "fogline keys create k --dir keys | fogline apply -f -\n"
        "FOGLINE_CLAIM=x fogline agent run --hub H \\\n    [--claim-file F] > a.log 2>&1 &\n"
        "fogline rollout pause|resume NAME [-o json]\n"
        "fogline devices lst\n"
        "fogline release push x.tar.zst --forse\n"
        "fogline rollout pause|explode NAME\n"
        "```\n"
        "```\nerror: fogline said no\n```\n",
    )
    commands = [command for block in blocks for command in fogline_commands(block)]
    assert [str(c) for c in commands] == [
        "fogline claim create --labels a=b",
        "fogline keys create k --dir keys",
        "fogline apply -f -",
        "fogline agent run --hub H [--claim-file F]",
        "fogline rollout pause|resume NAME [-o json]",
        "fogline devices lst",
        "fogline release push x.tar.zst --forse",
        "fogline rollout pause|explode NAME",
    ]
    assert [c.line for c in commands] == [2, 3, 3, 4, 6, 7, 8, 9]
    problems = [check_command(command) for command in commands]
    assert problems[:5] == [[], [], [], [], []]
    assert "has no command lst" in problems[5][0]
    assert "`fogline release push` has no option --forse" in problems[6][0]
    assert "`fogline rollout` has no command explode" in problems[7][0]


def test_the_manifests_example_layers_as_the_page_describes() -> None:
    [first] = [b for b in YAML_BLOCKS if b.page.name == "manifests.md" and b.kind is None][:1]
    manifests = check_yaml(first)
    assert manifests is not None
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


def test_the_pages_link_only_to_files_that_exist() -> None:
    # The docs send readers to examples/ and to each other: those must be there.
    import re

    for page in doc_pages():
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to {target}"
