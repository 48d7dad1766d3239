"""Reading manifest files and composing YAML with positions."""

import io
from pathlib import Path

import pytest

from fogline.manifest import (
    MAX_SOURCE_BYTES,
    ManifestError,
    ManifestSource,
    Origin,
    load_manifests,
    read_sources,
)
from fogline.manifest._yaml import _LOADERS, compose_documents

from ._support import deployment_doc, load, problems, source


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_read_sources_reads_one_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "fleet.yaml", deployment_doc("base"))
    [read] = read_sources(str(path))
    assert read == ManifestSource(str(path), deployment_doc("base"))


def test_read_sources_reads_yaml_files_of_a_directory_sorted_not_recursive(
    tmp_path: Path,
) -> None:
    _write(tmp_path / "b.yml", deployment_doc("b"))
    _write(tmp_path / "a.yaml", deployment_doc("a"))
    _write(tmp_path / "notes.txt", "not yaml")
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "sub" / "c.yaml", deployment_doc("c"))
    names = [Path(s.name).name for s in read_sources(str(tmp_path))]
    assert names == ["a.yaml", "b.yml"]


def test_read_sources_reads_stdin_for_dash() -> None:
    [read] = read_sources("-", stdin=io.BytesIO(deployment_doc("x").encode()))
    assert read.name == "<stdin>"
    assert load_manifests([read]).deployments[0].name == "x"


def test_read_sources_reports_every_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as caught:
        read_sources(str(tmp_path / "missing.yaml"))
    assert str(caught.value) == f"{tmp_path / 'missing.yaml'}: No such file or directory"


def test_read_sources_rejects_a_directory_without_manifests(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as caught:
        read_sources(str(tmp_path))
    assert str(caught.value) == f"{tmp_path}: no *.yaml or *.yml files"


def test_read_sources_collects_problems_of_all_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_bytes(b"a: 1\nb: \xff\n")
    (tmp_path / "b.yaml").write_bytes(b"x" * (MAX_SOURCE_BYTES + 1))
    with pytest.raises(ManifestError) as caught:
        read_sources(str(tmp_path))
    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path / 'a.yaml'}:2:4: not valid UTF-8 (byte 0xff)",
        f"{tmp_path / 'b.yaml'}: larger than {MAX_SOURCE_BYTES} bytes",
    ]


def test_utf8_byte_order_mark_is_accepted() -> None:
    read = ManifestSource.from_bytes("bom.yaml", b"\xef\xbb\xbf" + deployment_doc("x").encode())
    assert load_manifests([read]).deployments[0].name == "x"


def test_origin_is_the_start_of_each_document() -> None:
    manifests = load(
        deployment_doc("a") + "---\n" + deployment_doc("b", "selector: {}\npriority: 1")
    )
    assert [d.origin for d in manifests.deployments] == [
        Origin("fleet.yaml", 1, 1),
        Origin("fleet.yaml", 8, 1),
    ]


def test_empty_documents_and_comment_only_files_are_skipped() -> None:
    text = "# just a comment\n---\n---\n" + deployment_doc("a") + "---\n"
    assert [d.name for d in load(text).deployments] == ["a"]
    assert load("# nothing here\n").deployments == ()


@pytest.mark.parametrize("loader", _LOADERS, ids=lambda cls: cls.__name__)
def test_yaml_syntax_error_points_at_its_position(loader: type) -> None:
    text = deployment_doc("a") + "---\nkind: a: b\n"
    docs, found = compose_documents([source(text)], loader=loader)
    assert [d.value["metadata"]["name"] for d in docs] == ["a"]
    assert [str(p) for p in found] == [
        "fleet.yaml:8:8: invalid YAML: mapping values are not allowed in this context"
        if loader.__name__ == "_CLoader"
        else "fleet.yaml:8:8: invalid YAML: mapping values are not allowed here"
    ]


def test_syntax_error_still_reports_problems_of_earlier_documents() -> None:
    text = deployment_doc("a", "selector: {}\npriority: -1") + "---\n[unclosed\n"
    found = problems(text)
    assert found[0] == "fleet.yaml:7:13: spec.priority: must be at least 0 (got -1)"
    assert found[1].startswith("fleet.yaml:10:1: invalid YAML:")


def test_scalars_follow_the_yaml_1_2_core_schema() -> None:
    text = """
        country: NO
        on: yes
        1: one
        quoted: "5"
        tagged: !!str 5
        int: 42
        negative: -7
        octal: 0o17
        hex: 0xff
        float: 1.5
        exponent: 2e3
        version: 1.10
        nulls: [~, null, ]
        booleans: [true, False, TRUE]
        timestamp: 2030-01-01T00:00:00Z
        tagged_int: !!int "12"
    """
    [doc], found = compose_documents([source(text)])
    assert found == []
    assert doc.value == {
        "country": "NO",
        "on": "yes",
        "1": "one",
        "quoted": "5",
        "tagged": "5",
        "int": 42,
        "negative": -7,
        "octal": 15,
        "hex": 255,
        "float": 1.5,
        "exponent": 2000.0,
        "version": 1.1,
        "nulls": [None, None],
        "booleans": [True, False, True],
        "timestamp": "2030-01-01T00:00:00Z",
        "tagged_int": 12,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "a: !!binary aGVsbG8=\n",
            "fleet.yaml:1:4: a: unsupported YAML tag 'tag:yaml.org,2002:binary'",
        ),
        ("a: !custom x\n", "fleet.yaml:1:4: a: unsupported YAML tag '!custom'"),
        ("a: !!set {x}\n", "fleet.yaml:1:4: a: unsupported YAML tag 'tag:yaml.org,2002:set'"),
        ("a: !!int nope\n", "fleet.yaml:1:4: a: 'nope' is not a valid int"),
        (
            "a:\n  [x, y]: 1\n",
            "fleet.yaml:2:3: a: mapping keys must be strings, not a list or mapping",
        ),
        ("a: .nan\n", "fleet.yaml:1:4: a: number .nan is not allowed: JSON has no NaN or infinity"),
        (
            "a: -.inf\n",
            "fleet.yaml:1:4: a: number -.inf is not allowed: JSON has no NaN or infinity",
        ),
        (
            "a: 1e999\n",
            "fleet.yaml:1:4: a: number 1e999 is not allowed: JSON has no NaN or infinity",
        ),
        (
            "a: 9223372036854775808\n",
            "fleet.yaml:1:4: a: integer 9223372036854775808 is out of range (64-bit)",
        ),
    ],
)
def test_values_json_cannot_hold_are_rejected_at_their_position(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_duplicate_key_points_at_the_second_and_names_the_first() -> None:
    text = deployment_doc("a", "selector: {}\npriority: 1\npriority: 2")
    assert problems(text) == [
        "fleet.yaml:8:3: spec.priority: duplicate key 'priority' (first at line 7, column 3)"
    ]


def test_problems_are_sorted_by_source_then_position() -> None:
    first = source("kind: x\n", "a.yaml")
    second = source("[]\n", "b.yaml")
    with pytest.raises(ManifestError) as caught:
        load_manifests([second, first])
    assert [p.file for p in caught.value.problems] == ["b.yaml", "a.yaml"]
