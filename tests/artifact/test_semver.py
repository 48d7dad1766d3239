"""Strict semantic versions and their precedence."""

import contextlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fogline.artifact import Version, parse_semver


def test_parses_all_parts() -> None:
    assert parse_semver("1.2.3-rc.1+build.7") == Version(1, 2, 3, ("rc", "1"), ("build", "7"))
    assert str(parse_semver("1.2.3-rc.1+build.7")) == "1.2.3-rc.1+build.7"


@pytest.mark.parametrize(
    "text",
    [
        "1.2",
        "v1.2.3",
        "01.2.3",
        "1.02.3",
        "1.2.3-01",
        "1.2.3-",
        "1.2.3+",
        "1.2.3 ",
        " 1.2.3",
        "1.2.3\n",
        "1.2.3-rc..1",
        "1.2.3+a+b",
        "1.2.٣",
        "1." + "1" * 200 + ".0",
        "",
    ],
)
def test_refuses_anything_not_strict_semver(text: str) -> None:
    with pytest.raises(ValueError, match="semantic version"):
        parse_semver(text)


def test_refuses_non_strings() -> None:
    with pytest.raises(ValueError, match="version string"):
        parse_semver(1.2)  # type: ignore[arg-type]


def test_precedence_follows_semver_org() -> None:
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.1.0",
        "2.0.0",
        "10.0.0",
    ]
    versions = [parse_semver(text) for text in ordered]
    assert sorted(reversed(versions)) == versions
    assert all(a < b and b > a and a <= b and not a >= b for a, b in itertools.pairwise(versions))


def test_build_metadata_does_not_change_precedence() -> None:
    a, b = parse_semver("1.0.0+a"), parse_semver("1.0.0+b")
    assert a != b
    assert a.precedence_key() == b.precedence_key()
    assert parse_semver("1.0.0-rc.1+zzz") < parse_semver("1.0.0+aaa")
    assert parse_semver("1.0.0-rc.1").is_prerelease
    assert not parse_semver("1.0.0+x").is_prerelease


_ident = st.from_regex(r"[0-9A-Za-z-]{1,8}", fullmatch=True).filter(
    lambda s: not (s.isdigit() and len(s) > 1 and s.startswith("0"))
)
_versions = st.builds(
    Version,
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.lists(_ident, max_size=3).map(tuple),
    st.lists(st.from_regex(r"[0-9A-Za-z-]{1,8}", fullmatch=True), max_size=2).map(tuple),
)


@settings(max_examples=150, deadline=None)
@given(_versions)
def test_text_round_trips(version: Version) -> None:
    assert parse_semver(str(version)) == version


@settings(max_examples=150, deadline=None)
@given(_versions, _versions)
def test_order_is_total_and_consistent_with_equality(a: Version, b: Version) -> None:
    assert (a < b) + (a == b) + (a > b) == 1


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_text_parses_or_raises_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        assert str(parse_semver(text)) == text
