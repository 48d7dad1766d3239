"""Selectors follow Kubernetes label-selector semantics."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fogline.manifest import Operator, Requirement, Selector, selectors_overlap

IN, NOT_IN, EXISTS, MISSING = (
    Operator.IN,
    Operator.NOT_IN,
    Operator.EXISTS,
    Operator.DOES_NOT_EXIST,
)


def req(key: str, op: Operator, *values: str) -> Requirement:
    return Requirement(key, op, frozenset(values))


BERLIN_ARM = {"site": "berlin", "arch": "arm64"}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        (Selector(), {}, True),
        (Selector(), BERLIN_ARM, True),
        (Selector({"site": "berlin"}), BERLIN_ARM, True),
        (Selector({"site": "paris"}), BERLIN_ARM, False),
        (Selector({"site": "berlin", "arch": "amd64"}), BERLIN_ARM, False),
        (Selector({"site": "berlin"}), {}, False),
        (Selector(match_expressions=(req("arch", IN, "arm64", "amd64"),)), BERLIN_ARM, True),
        (Selector(match_expressions=(req("arch", IN, "amd64"),)), BERLIN_ARM, False),
        (Selector(match_expressions=(req("arch", IN, "arm64"),)), {}, False),
        (Selector(match_expressions=(req("arch", NOT_IN, "amd64"),)), BERLIN_ARM, True),
        (Selector(match_expressions=(req("arch", NOT_IN, "arm64"),)), BERLIN_ARM, False),
        # Kubernetes: a device without the key is "not in" any set.
        (Selector(match_expressions=(req("gpu", NOT_IN, "yes"),)), BERLIN_ARM, True),
        (Selector(match_expressions=(req("site", EXISTS),)), BERLIN_ARM, True),
        (Selector(match_expressions=(req("gpu", EXISTS),)), BERLIN_ARM, False),
        (Selector(match_expressions=(req("gpu", MISSING),)), BERLIN_ARM, True),
        (Selector(match_expressions=(req("site", MISSING),)), BERLIN_ARM, False),
        # Everything must hold (AND).
        (
            Selector({"site": "berlin"}, (req("arch", IN, "arm64"), req("gpu", MISSING))),
            BERLIN_ARM,
            True,
        ),
        (Selector({"site": "berlin"}, (req("arch", IN, "amd64"),)), BERLIN_ARM, False),
        # An empty value is a value: present, equal to "".
        (Selector({"site": ""}), {"site": ""}, True),
        (Selector(match_expressions=(req("site", EXISTS),)), {"site": ""}, True),
    ],
)
def test_selector_matches(selector: Selector, labels: dict[str, str], expected: bool) -> None:
    assert selector.matches(labels) is expected


def test_selector_does_not_follow_later_changes_to_the_callers_dict() -> None:
    labels = {"site": "berlin"}
    selector = Selector(labels)
    labels["site"] = "paris"
    assert selector.matches({"site": "berlin"})


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        (Selector(), Selector(), True),
        (Selector({"site": "a"}), Selector(), True),
        (Selector({"site": "a"}), Selector({"arch": "arm64"}), True),
        (Selector({"site": "a"}), Selector({"site": "a"}), True),
        (Selector({"site": "a"}), Selector({"site": "b"}), False),
        (Selector({"site": "a"}), Selector(match_expressions=(req("site", IN, "a", "b"),)), True),
        (Selector({"site": "a"}), Selector(match_expressions=(req("site", IN, "b", "c"),)), False),
        (Selector({"site": "a"}), Selector(match_expressions=(req("site", NOT_IN, "a"),)), False),
        (Selector({"site": "a"}), Selector(match_expressions=(req("site", NOT_IN, "b"),)), True),
        (Selector({"site": "a"}), Selector(match_expressions=(req("site", MISSING),)), False),
        (
            Selector(match_expressions=(req("gpu", EXISTS),)),
            Selector(match_expressions=(req("gpu", MISSING),)),
            False,
        ),
        (
            Selector(match_expressions=(req("gpu", NOT_IN, "x"),)),
            Selector(match_expressions=(req("gpu", MISSING),)),
            True,
        ),
        (
            Selector(match_expressions=(req("gpu", IN, "x", "y"),)),
            Selector(match_expressions=(req("gpu", NOT_IN, "x"), req("gpu", NOT_IN, "y"))),
            False,
        ),
        # A selector that contradicts itself matches nothing, so overlaps nothing.
        (Selector({"site": "a"}, (req("site", MISSING),)), Selector(), False),
    ],
)
def test_selectors_overlap(a: Selector, b: Selector, overlap: bool) -> None:
    assert selectors_overlap(a, b) is overlap
    assert selectors_overlap(b, a) is overlap


KEYS = st.sampled_from(["site", "arch", "gpu"])
VALUES = st.sampled_from(["a", "b", "c"])
REQUIREMENTS = st.builds(
    lambda key, op, values: Requirement(
        key, op, frozenset(values) if op in (IN, NOT_IN) else frozenset()
    ),
    KEYS,
    st.sampled_from(list(Operator)),
    st.sets(VALUES, min_size=1, max_size=2),
)
SELECTORS = st.builds(
    Selector,
    st.dictionaries(KEYS, VALUES, max_size=2),
    st.lists(REQUIREMENTS, max_size=3).map(tuple),
)
ALL_LABEL_SETS = [
    {k: v for k, v in zip(["site", "arch", "gpu"], combo, strict=True) if v is not None}
    for combo in itertools.product([None, "a", "b", "c", "d"], repeat=3)
]


@settings(max_examples=200, deadline=None)
@given(SELECTORS, SELECTORS)
def test_overlap_is_exact_against_brute_force(a: Selector, b: Selector) -> None:
    # With three keys and values a-d (d: a value no selector names), every
    # distinct way a device can look to these selectors is enumerated.
    brute = any(a.matches(labels) and b.matches(labels) for labels in ALL_LABEL_SETS)
    assert selectors_overlap(a, b) is brute
