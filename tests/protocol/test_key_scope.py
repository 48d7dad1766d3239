"""Release key scopes: patterns, coverage, and how trust sources combine."""

import pytest

from fogline.protocol import (
    EnrollResponse,
    KeyScope,
    check_module_pattern,
    parse_key_scopes,
    union_of_patterns,
)


@pytest.mark.parametrize(
    ("patterns", "module", "covered"),
    [
        (None, "anything", True),
        (["thermo-*"], "thermo-filter", True),
        (["thermo-*"], "thermostat", False),
        (["gw", "thermo-?"], "thermo-1", True),
        (["[a-c]*"], "billing", True),
        (["[!a-c]*"], "billing", False),
        (["thermo-*"], "THERMO-filter", False),  # case-sensitive
        ([], "thermo-filter", False),  # a malformed (empty) grant covers nothing
    ],
)
def test_a_scope_covers_the_modules_its_patterns_match(
    patterns: list[str] | None, module: str, covered: bool
) -> None:
    assert KeyScope.of(patterns).covers(module) is covered


def test_narrowing_needs_every_grant_and_unscoped_adds_nothing() -> None:
    pinned = KeyScope.of(["thermo-*"])
    assert pinned.narrowed(KeyScope.of(None)) == pinned
    both = pinned.narrowed(KeyScope.of(["thermo-filter", "gw"]))
    assert both.covers("thermo-filter")
    assert not both.covers("gw")  # the desired state cannot widen the pinned scope
    assert not both.covers("thermo-other")  # ...and it may narrow it
    assert both.describe() == "[thermo-*] and [thermo-filter, gw]"
    assert KeyScope().describe() == "every module"


def test_one_source_listing_a_key_twice_allows_what_either_listing_allows() -> None:
    assert union_of_patterns([["a-*"], ["b-*", "a-*"]]) == ("a-*", "b-*")
    assert union_of_patterns([["a-*"], None]) is None


@pytest.mark.parametrize("bad", ["", "A*", "a/b", "../x", "x" * 129, 5, None, "a b"])
def test_patterns_are_module_name_globs(bad: object) -> None:
    with pytest.raises(ValueError, match="must be"):
        check_module_pattern(bad)


def test_malformed_received_scopes_fail_closed() -> None:
    parsed = parse_key_scopes({"ok": ["web-*"], "bad": "web-*", "worse": ["../x"], "n": None})
    assert parsed == {"ok": ("web-*",), "bad": (), "worse": (), "n": ()}
    assert parse_key_scopes(["not", "a", "mapping"]) == {}
    assert not KeyScope.of(parsed["bad"]).covers("web-1")


def test_an_enrollment_answer_without_scopes_still_parses() -> None:
    old = {
        "device_id": "d1",
        "name": "node-1",
        "certificate": "-----BEGIN CERTIFICATE-----",
        "ca": "-----BEGIN CERTIFICATE-----",
        "report_interval_s": 10.0,
        "release_keys": {"ci": "AAAA"},
    }
    answer = EnrollResponse.model_validate(old)
    assert answer.release_key_scopes == {}
    scoped = EnrollResponse.model_validate({**old, "release_key_scopes": {"ci": ["web-*"]}})
    assert scoped.release_key_scopes == {"ci": ["web-*"]}
