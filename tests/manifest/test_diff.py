"""Field-level differences between desired-state documents, for `plan`."""

import json
import re
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from fogline.manifest import (
    Deployment,
    FieldChange,
    Selector,
    canonical_json,
    compile_desired_state,
    diff_documents,
)


def test_identical_documents_have_no_changes() -> None:
    doc = compile_desired_state([Deployment("a", Selector(), config={"x": [1, {"y": 2}]})], {})
    assert diff_documents(doc.document, orjson.loads(canonical_json(doc.document))) == []


def test_changes_are_keyed_by_name_for_modules_and_by_key_for_config() -> None:
    old = {
        "config": {"sampling": {"rate": 5, "unit": "s"}, "mode": "eco"},
        "drift": "report",
        "modules": [{"name": "cam", "version": "1"}, {"name": "thermo", "version": "1.0"}],
        "pipelines": [{"name": "temps"}],
    }
    new = {
        "config": {"sampling": {"rate": 1, "unit": "s"}, "debug": True},
        "drift": "correct",
        "modules": [{"name": "audio"}, {"name": "thermo", "version": "2.0"}],
        "pipelines": [{"name": "temps"}],
    }
    assert diff_documents(old, new) == [
        FieldChange("config.debug", "add", new=True),
        FieldChange("config.mode", "remove", old="eco"),
        FieldChange("config.sampling.rate", "change", old=5, new=1),
        FieldChange("drift", "change", old="report", new="correct"),
        FieldChange("modules[audio]", "add", new={"name": "audio"}),
        FieldChange("modules[cam]", "remove", old={"name": "cam", "version": "1"}),
        FieldChange("modules[thermo].version", "change", old="1.0", new="2.0"),
    ]


def test_types_matter_even_when_python_says_equal() -> None:
    assert diff_documents({"config": {"a": 1}}, {"config": {"a": 1.0}}) == [
        FieldChange("config.a", "change", old=1, new=1.0)
    ]
    assert diff_documents({"config": {"a": [1]}}, {"config": {"a": [True]}}) == [
        FieldChange("config.a", "change", old=[1], new=[True])
    ]


def test_odd_keys_and_names_are_quoted() -> None:
    old = {"config": {"fogline.dev/x": 1}, "modules": [{"name": "a b", "v": 1}]}
    new = {"config": {"fogline.dev/x": 2}, "modules": [{"name": "a b", "v": 2}]}
    assert [c.path for c in diff_documents(old, new)] == [
        'config["fogline.dev/x"]',
        'modules["a b"].v',
    ]


def test_new_device_diffs_against_the_empty_state() -> None:
    state = compile_desired_state(
        [Deployment("a", Selector(), config={"x": 1}, modules=[{"name": "m"}])], {}
    )
    assert diff_documents(None, state.document) == [
        FieldChange("config.x", "add", new=1),
        FieldChange("deployments", "change", old=[], new=[{"name": "a", "priority": 0}]),
        FieldChange("modules[m]", "add", new={"name": "m"}),
    ]


def test_lists_of_unnamed_entries_change_as_a_whole() -> None:
    old = {"modules": [{"v": 1}]}
    new = {"modules": [{"v": 2}]}
    assert diff_documents(old, new) == [
        FieldChange("modules", "change", old=[{"v": 1}], new=[{"v": 2}])
    ]


# --- applying a diff reproduces the new document -------------------------------

_SEGMENT = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_-]*)|\[("(?:[^"\\]|\\.)*"|[^\]]+)\]')


def _segments(path: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(path):
        match = _SEGMENT.match(path, pos)
        assert match, path
        bare, bracketed = match.groups()
        out.append(
            bare
            if bare is not None
            else (json.loads(bracketed) if bracketed.startswith('"') else bracketed)
        )
        pos = match.end()
    return out


def _apply(doc: dict[str, Any], changes: list[FieldChange]) -> dict[str, Any]:
    for change in changes:
        *parents, last = _segments(change.path)
        container: Any = doc
        for part in parents:
            container = _child(container, part)
        if isinstance(container, list):  # a named entry of modules/pipelines
            container[:] = [e for e in container if e["name"] != last]
            if change.op != "remove":
                container.append(change.new)
                container.sort(key=lambda e: e["name"])
        elif change.op == "remove":
            del container[last]
        else:
            container[last] = change.new
    return doc


def _child(container: Any, part: str) -> Any:
    if isinstance(container, list):
        return next(e for e in container if e["name"] == part)
    return container[part]


KEYS = st.sampled_from(["a", "b", "c.d", "e f"])
VALUES = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-3, 3), st.floats(-2, 2), st.text("xy", max_size=2)
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=2), st.dictionaries(KEYS, children, max_size=3)
    ),
    max_leaves=8,
)
NAMED = st.lists(
    st.builds(lambda n, v: {"name": n, "v": v}, st.sampled_from(["m1", "m 2", "m3"]), VALUES),
    max_size=3,
    unique_by=lambda e: e["name"],
).map(lambda entries: sorted(entries, key=lambda e: e["name"]))
DOCUMENTS = st.fixed_dictionaries(
    {},
    optional={
        "config": st.dictionaries(KEYS, VALUES, max_size=4),
        "drift": st.sampled_from(["report", "correct"]),
        "modules": NAMED,
        "pipelines": NAMED,
    },
)


@settings(max_examples=150, deadline=None)
@given(DOCUMENTS, DOCUMENTS)
def test_applying_the_diff_reproduces_the_new_document(
    old: dict[str, Any], new: dict[str, Any]
) -> None:
    changes = diff_documents(old, new)
    assert changes == sorted(changes, key=lambda c: _segments(c.path))
    patched = _apply(orjson.loads(orjson.dumps(old)), changes)
    assert canonical_json(patched) == canonical_json(new)
    assert (changes == []) == (canonical_json(old) == canonical_json(new))


def test_negative_zero_is_a_change_like_in_the_canonical_json() -> None:
    assert diff_documents({"config": {"a": 0.0}}, {"config": {"a": -0.0}}) == [
        FieldChange("config.a", "change", old=0.0, new=-0.0)
    ]
