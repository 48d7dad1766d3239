"""Compiling the deployments that select a device into its desired state."""

import hashlib
from typing import Any, cast

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fogline.manifest import (
    Deployment,
    DesiredState,
    Operator,
    Requirement,
    Selector,
    canonical_json,
    compile_desired_state,
)

from ._support import load

EVERYTHING = Selector()
BERLIN = Selector({"site": "berlin"})


def test_unmatched_device_gets_a_valid_empty_document() -> None:
    state = compile_desired_state([Deployment("paris", Selector({"site": "paris"}))], {})
    assert state.document == {
        "config": {},
        "deployments": (),
        "drift": "report",
        "modules": (),
        "pipelines": (),
    }
    assert state.revision == "sha256:" + hashlib.sha256(canonical_json(state.document)).hexdigest()


def test_revision_hashes_the_canonical_sorted_compact_json() -> None:
    state = compile_desired_state([Deployment("base", EVERYTHING, config={"b": 1, "a": 2})], {})
    assert canonical_json(state.document) == (
        b'{"config":{"a":2,"b":1},"deployments":[{"name":"base","priority":0}],'
        b'"drift":"report","modules":[],"pipelines":[]}'
    )


def test_higher_priority_overrides_and_mappings_merge_key_by_key() -> None:
    base = Deployment(
        "base",
        EVERYTHING,
        config={"sampling": {"rate": 5, "unit": "s"}, "tags": ["a", "b"], "mode": "eco"},
    )
    berlin = Deployment(
        "berlin", BERLIN, priority=10, config={"sampling": {"rate": 1}, "tags": ["c"]}
    )
    state = compile_desired_state([berlin, base], {"site": "berlin"})
    assert state.document["config"] == {
        "sampling": {"rate": 1, "unit": "s"},  # merged key by key
        "tags": ("c",),  # lists are replaced, not appended
        "mode": "eco",
    }
    assert state.document["deployments"] == (
        {"name": "base", "priority": 0},
        {"name": "berlin", "priority": 10},
    )


def test_null_in_a_higher_layer_deletes_the_key() -> None:
    base = Deployment("base", EVERYTHING, config={"debug": {"level": 3}, "sampling": {"rate": 5}})
    quiet = Deployment(
        "quiet",
        EVERYTHING,
        priority=1,
        config={"debug": None, "sampling": {"rate": None}, "x": None},
    )
    state = compile_desired_state([base, quiet], {})
    assert state.document["config"] == {"sampling": {}}


def test_scalar_replaced_by_mapping_and_back() -> None:
    low = Deployment("low", EVERYTHING, config={"a": 1, "b": {"c": 1}})
    high = Deployment("high", EVERYTHING, priority=1, config={"a": {"x": 1}, "b": 2})
    assert compile_desired_state([low, high], {}).document["config"] == {"a": {"x": 1}, "b": 2}


def test_modules_and_pipelines_merge_by_name_whole_entry_wins() -> None:
    base = Deployment(
        "base",
        EVERYTHING,
        modules=[{"name": "thermo", "version": "1.0", "env": {"A": "1"}}, {"name": "cam"}],
        pipelines=[{"name": "temps", "steps": [1]}],
    )
    canary = Deployment(
        "canary",
        BERLIN,
        priority=5,
        modules=[{"name": "thermo", "version": "2.0"}, {"name": "audio"}],
        pipelines=[{"name": "alerts"}],
    )
    doc = compile_desired_state([canary, base], {"site": "berlin"}).document
    assert doc["modules"] == (
        {"name": "audio"},
        {"name": "cam"},
        {"name": "thermo", "version": "2.0"},  # no "env": the entry is replaced whole
    )
    assert doc["pipelines"] == ({"name": "alerts"}, {"name": "temps", "steps": (1,)})


def test_drift_comes_from_the_highest_layer_that_sets_it() -> None:
    base = Deployment("base", EVERYTHING, drift="correct")
    overlay = Deployment("overlay", EVERYTHING, priority=1)
    assert compile_desired_state([base, overlay], {}).document["drift"] == "correct"
    report = Deployment("report", EVERYTHING, priority=2, drift="report")
    assert compile_desired_state([base, overlay, report], {}).document["drift"] == "report"


def test_only_matching_deployments_contribute() -> None:
    arm = Selector(match_expressions=(Requirement("arch", Operator.IN, frozenset({"arm64"})),))
    deployments = [
        Deployment("base", EVERYTHING, config={"a": 1}),
        Deployment("arm", arm, priority=1, config={"a": 2}),
    ]
    assert compile_desired_state(deployments, {"arch": "amd64"}).document["config"] == {"a": 1}
    assert compile_desired_state(deployments, {"arch": "arm64"}).document["config"] == {"a": 2}


def test_document_is_read_only_and_deployments_are_not_touched() -> None:
    base = Deployment("base", EVERYTHING, config={"a": {"b": 1}})
    state = compile_desired_state([base, Deployment("x", EVERYTHING, 1, {"a": {"c": 2}})], {})
    document: Any = state.document
    with pytest.raises(TypeError):
        document["config"]["a"]["b"] = 5
    assert base.config == {"a": {"b": 1}}
    assert isinstance(state, DesiredState)


def test_compiles_from_loaded_manifests() -> None:
    text = """
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {name: base}
        spec:
          selector: {}
          config: {sampling: {rate: 5}}
          modules: [{name: thermo, version: 1.0.0}]
        ---
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {name: berlin}
        spec:
          selector: {matchLabels: {site: berlin}}
          priority: 10
          config: {sampling: {rate: 1}}
          drift: correct
    """
    manifests = load(text)
    doc = orjson.loads(
        canonical_json(compile_desired_state(manifests.deployments, {"site": "berlin"}).document)
    )
    assert doc == {
        "config": {"sampling": {"rate": 1}},
        "deployments": [{"name": "base", "priority": 0}, {"name": "berlin", "priority": 10}],
        "drift": "correct",
        "modules": [{"name": "thermo", "version": "1.0.0"}],
        "pipelines": [],
    }


def test_equal_name_and_priority_still_compile_independent_of_order() -> None:
    a = Deployment("same", EVERYTHING, config={"v": 1})
    b = Deployment("same", EVERYTHING, config={"v": 2})
    assert compile_desired_state([a, b], {}) == compile_desired_state([b, a], {})


# --- properties ---------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "c", "d"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text("xyz", max_size=3))
CONFIG = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(KEYS, children, max_size=3)
    ),
    max_leaves=10,
).filter(lambda v: isinstance(v, dict))
LABELS = st.dictionaries(st.sampled_from(["site", "arch"]), st.sampled_from(["x", "y"]))
SELECTOR = st.builds(
    Selector,
    st.dictionaries(st.sampled_from(["site", "arch"]), st.sampled_from(["x", "y"]), max_size=1),
)
MODULES = st.lists(
    st.builds(
        lambda n, v: {"name": n, "v": v}, st.sampled_from(["m1", "m2", "m3"]), st.integers(0, 3)
    ),
    max_size=3,
    unique_by=lambda m: m["name"],
)


@st.composite
def deployment_lists(draw: st.DrawFn) -> list[Deployment]:
    count = draw(st.integers(0, 5))
    # Distinct (priority, name): what a valid manifest set can contain.
    priorities = draw(st.lists(st.integers(0, 1000), min_size=count, max_size=count, unique=True))
    return [
        Deployment(
            f"d{i}",
            draw(SELECTOR),
            priority=priority,
            config=cast(dict[str, Any], draw(CONFIG)),
            modules=draw(MODULES),
            drift=draw(st.sampled_from([None, "correct", "report"])),
        )
        for i, priority in enumerate(priorities)
    ]


@settings(max_examples=80, deadline=None)
@given(deployment_lists(), LABELS, st.randoms(use_true_random=False))
def test_order_of_deployments_does_not_change_the_result(
    deployments: list[Deployment], labels: dict[str, str], rnd: Any
) -> None:
    shuffled = list(deployments)
    rnd.shuffle(shuffled)
    assert compile_desired_state(shuffled, labels) == compile_desired_state(deployments, labels)


@settings(max_examples=50, deadline=None)
@given(deployment_lists(), LABELS)
def test_recompiling_unchanged_input_gives_the_same_revision(
    deployments: list[Deployment], labels: dict[str, str]
) -> None:
    first = compile_desired_state(deployments, labels)
    # Through the manifest text and back, as the hub does after a restart.
    text = "---\n".join(orjson.dumps(d.to_document()).decode() + "\n" for d in deployments)
    rebuilt = load(text).deployments if deployments else ()
    assert rebuilt == tuple(deployments)
    assert compile_desired_state(rebuilt, labels).revision == first.revision


def _leaves(config: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Paths a config layer sets: non-null values that are not mappings."""
    out: list[tuple[tuple[str, ...], Any]] = []
    for key, value in config.items():
        if isinstance(value, dict):
            out += _leaves(value, (*prefix, key))
        elif value is not None:
            out.append(((*prefix, key), value))
    return out


def _get(doc: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


@settings(max_examples=80, deadline=None)
@given(deployment_lists(), LABELS, CONFIG)
def test_higher_priority_match_everything_wins_every_key_it_sets(
    deployments: list[Deployment], labels: dict[str, str], config: dict[str, Any]
) -> None:
    top = Deployment("top", EVERYTHING, priority=1001, config=config)
    doc = orjson.loads(canonical_json(compile_desired_state([*deployments, top], labels).document))
    for path, value in _leaves(config):
        assert _get(doc["config"], path) == value
    assert doc["deployments"][-1] == {"name": "top", "priority": 1001}
