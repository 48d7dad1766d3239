"""One-line selectors (`fogline devices ls --selector`, `GET /v1/devices?selector=`)
parse to the Selector a Deployment's spec.selector compiles to."""

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fogline.manifest import (
    MAX_SELECTOR_CHARS,
    Operator,
    Requirement,
    Selector,
    SelectorSyntaxError,
    parse_selector,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Selector()),
        ("  ", Selector()),
        ("site=berlin", Selector({"site": "berlin"})),
        ("site==berlin, tier=gold", Selector({"site": "berlin", "tier": "gold"})),
        (
            "tier in (gold, silver)",
            Selector(
                match_expressions=(Requirement("tier", Operator.IN, frozenset({"gold", "silver"})),)
            ),
        ),
        (
            "tier notin (bronze),env!=lab",
            Selector(
                match_expressions=(
                    Requirement("tier", Operator.NOT_IN, frozenset({"bronze"})),
                    Requirement("env", Operator.NOT_IN, frozenset({"lab"})),
                )
            ),
        ),
        (
            "gpu,!retired",
            Selector(
                match_expressions=(
                    Requirement("gpu", Operator.EXISTS),
                    Requirement("retired", Operator.DOES_NOT_EXIST),
                )
            ),
        ),
        ("fogline.dev/arch=arm64", Selector({"fogline.dev/arch": "arm64"})),
    ],
)
def test_a_one_line_selector_parses_to_the_manifest_selector(text: str, expected: Selector) -> None:
    assert parse_selector(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("site in (a", "never closed"),
        ("site in ((a))", "nested"),
        ("site)", "without '('"),
        ("site in ()", "at least one value"),
        ("a,,b", "empty term"),
        ("a=b,", "empty term"),
        ("site=a,site=b", "two values"),
        ("si te=a", "is not key=value"),
        ("site=bad$value", "label value"),
        ("-site=a", "label key"),
        ("k=" + "v" * 64, "label value"),
        (",".join(f"k{i}" for i in range(65)), "at most 64"),
        ("a" * (MAX_SELECTOR_CHARS + 1), "characters long"),
    ],
)
def test_a_bad_selector_says_why(text: str, reason: str) -> None:
    with pytest.raises(SelectorSyntaxError) as caught:
        parse_selector(text)
    assert reason in caught.value.reason


@given(st.text(max_size=200))
def test_any_text_parses_or_raises_selector_syntax_error(text: str) -> None:
    with contextlib.suppress(SelectorSyntaxError):
        parse_selector(text)
