"""Hostile input is refused cleanly: a ManifestError, quickly, never another exception."""

import re
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fogline.manifest import (
    MAX_DEPTH,
    MAX_DOCUMENTS,
    MAX_SOURCE_BYTES,
    MAX_TOTAL_BYTES,
    ManifestError,
    ManifestSource,
    load_manifests,
)
from fogline.manifest._yaml import _LOADERS

from ._support import deployment_doc, problems

LOADERS = pytest.mark.parametrize("loader", _LOADERS, ids=lambda cls: cls.__name__)

BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def _load_with(loader: type, text: str) -> list[str]:
    with mock.patch("fogline.manifest._yaml._LOADERS", [loader]):
        return problems(text)


@LOADERS
@pytest.mark.timeout(10)
def test_alias_bomb_is_refused_at_the_first_alias(loader: type) -> None:
    assert _load_with(loader, BILLION_LAUGHS) == [
        "fleet.yaml:2:8: invalid YAML: YAML aliases (*name) are not allowed"
    ]


@LOADERS
def test_merge_key_with_alias_is_refused(loader: type) -> None:
    text = "base: &base {a: 1}\nother:\n  <<: *base\n"
    assert _load_with(loader, text) == [
        "fleet.yaml:3:7: invalid YAML: YAML aliases (*name) are not allowed"
    ]


@LOADERS
@pytest.mark.timeout(10)
def test_deep_flow_nesting_is_refused(loader: type) -> None:
    depth = 100_000
    text = "a: " + "[" * depth + "]" * depth + "\n"
    [found] = _load_with(loader, text)
    if loader.__name__ == "_CLoader":  # libyaml's own limit (1000) may trip first
        assert re.fullmatch(r"fleet\.yaml:1:\d+: invalid YAML: .*nesting depth", found), found
    else:
        assert found == (
            f"fleet.yaml:1:{3 + MAX_DEPTH}: invalid YAML: nested deeper than {MAX_DEPTH} levels"
        )


@LOADERS
def test_deep_block_nesting_is_refused(loader: type) -> None:
    text = "".join("  " * level + "k:\n" for level in range(200)) + "  " * 200 + "v\n"
    [found] = _load_with(loader, text)
    assert found == (
        f"fleet.yaml:{MAX_DEPTH}:{2 * MAX_DEPTH - 1}: invalid YAML: "
        f"nested deeper than {MAX_DEPTH} levels"
    )


def test_nesting_up_to_the_limit_is_fine() -> None:
    config = "{x: " * (MAX_DEPTH - 4) + "1" + "}" * (MAX_DEPTH - 4)
    text = deployment_doc("deep", f"selector: {{}}\nconfig: {config}")
    [deep] = load_manifests([ManifestSource("fleet.yaml", text)]).deployments
    assert deep.name == "deep"


def test_oversized_source_is_refused_before_parsing() -> None:
    huge = ManifestSource("huge.yaml", "a: [" * (MAX_SOURCE_BYTES // 4 + 1))
    with pytest.raises(ManifestError) as caught:
        load_manifests([huge])
    assert str(caught.value) == f"huge.yaml: larger than {MAX_SOURCE_BYTES} bytes"


def test_oversized_bytes_are_refused() -> None:
    with pytest.raises(ManifestError, match=f"big.yaml: larger than {MAX_SOURCE_BYTES} bytes"):
        ManifestSource.from_bytes("big.yaml", b"#" * (MAX_SOURCE_BYTES + 1))


@pytest.mark.timeout(10)
def test_too_much_in_total_is_refused_before_parsing() -> None:
    count = MAX_TOTAL_BYTES // MAX_SOURCE_BYTES + 1
    sources = [ManifestSource(f"{i}.yaml", "[" * MAX_SOURCE_BYTES) for i in range(count)]
    with pytest.raises(ManifestError) as caught:
        load_manifests(sources)
    assert str(caught.value) == f"0.yaml: manifests larger than {MAX_TOTAL_BYTES} bytes in total"


def test_too_many_documents_are_refused() -> None:
    text = "{}\n" + "--- {}\n" * MAX_DOCUMENTS
    found = problems(text)
    assert (
        found[-1]
        == f"fleet.yaml:{MAX_DOCUMENTS + 1}:5: more than {MAX_DOCUMENTS} documents in total"
    )


def test_non_utf8_bytes_are_refused_with_their_position() -> None:
    with pytest.raises(ManifestError) as caught:
        ManifestSource.from_bytes("latin1.yaml", "kind: Déploiement\n".encode("latin-1"))
    assert str(caught.value) == "latin1.yaml:1:8: not valid UTF-8 (byte 0xe9)"


def test_utf16_is_refused_as_not_utf8() -> None:
    with pytest.raises(ManifestError, match="not valid UTF-8"):
        ManifestSource.from_bytes("u16.yaml", "kind: x\n".encode("utf-16"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\nb: \x00\n", "fleet.yaml:2:4: character U+0000 is not allowed in YAML"),
        ("é: \x1b[31m\n", "fleet.yaml:1:4: character U+001B is not allowed in YAML"),
        ("a: \ud800\n", "fleet.yaml:1:4: character U+D800 is not allowed in YAML"),
    ],
)
def test_control_characters_are_refused_with_their_position(text: str, expected: str) -> None:
    assert problems(text) == [expected]


@pytest.mark.timeout(10)
def test_huge_integer_literal_is_refused_cheaply() -> None:
    [found] = problems("a: " + "9" * 200_000 + "\n")
    assert found.startswith(
        "fleet.yaml:1:4: a: integer 999999999999999999999999... is out of range"
    )


def test_python_object_tags_are_never_constructed() -> None:
    text = "a: !!python/object/apply:os.system ['touch /tmp/fogline-pwned']\n"
    assert problems(text) == [
        "fleet.yaml:1:4: a: unsupported YAML tag 'tag:yaml.org,2002:python/object/apply:os.system'"
    ]


YAMLISH = st.text(
    alphabet=st.sampled_from([*"ab:-[]{},&*!|>'\"#%@`?~\n\t 0.1\\", "é", "\x00", "\ufeff"]),
    max_size=120,
)


@LOADERS
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=YAMLISH)
def test_arbitrary_text_gives_a_result_or_a_manifest_error(loader: type, text: str) -> None:
    with mock.patch("fogline.manifest._yaml._LOADERS", [loader]):
        try:
            load_manifests([ManifestSource("fuzz.yaml", text)])
        except ManifestError as exc:
            assert exc.problems


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_give_a_result_or_a_manifest_error(data: bytes) -> None:
    try:
        load_manifests([ManifestSource.from_bytes("fuzz.yaml", data)])
    except ManifestError as exc:
        assert exc.problems


@settings(max_examples=200, deadline=None)
@given(
    spec=st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=5)),
        lambda c: st.one_of(
            st.lists(c, max_size=3),
            st.dictionaries(
                st.sampled_from(
                    [
                        "selector",
                        "priority",
                        "config",
                        "modules",
                        "pipelines",
                        "rollout",
                        "drift",
                        "matchLabels",
                        "matchExpressions",
                        "key",
                        "operator",
                        "values",
                        "name",
                        "labels",
                        "maxUses",
                        "expires",
                        "publicKey",
                    ]
                ),
                c,
                max_size=4,
            ),
        ),
        max_leaves=12,
    ),
    kind=st.sampled_from(["Deployment", "ProvisioningClaim", "ReleaseKey"]),
)
def test_arbitrary_documents_give_a_result_or_a_manifest_error(spec: object, kind: str) -> None:
    import orjson

    doc = {"apiVersion": "fogline.dev/v1", "kind": kind, "metadata": {"name": "x"}, "spec": spec}
    try:
        load_manifests([ManifestSource("fuzz.json", orjson.dumps(doc).decode())])
    except ManifestError as exc:
        assert all(p.line is not None for p in exc.problems)


def test_exactly_the_document_limit_is_fine_even_with_a_final_separator() -> None:
    text = "".join(
        deployment_doc(f"d{i}", f"selector: {{}}\npriority: {i}") + "---\n"
        for i in range(MAX_DOCUMENTS)
    )
    assert len(load_manifests([ManifestSource("many.yaml", text)]).deployments) == MAX_DOCUMENTS
