"""OSV advisories: parsing with bounds, matching with PEP 440 and semver
semantics, severity from CVSS vectors, and zips refused with file and reason."""

import datetime as dt
import io
import json
import zipfile
from pathlib import Path

import pytest

from fogline.vulns import (
    MAX_ADVISORY_BYTES,
    Advisory,
    AdvisoryError,
    VulnArchiveError,
    advisory_score,
    affects,
    level_of,
    parse_advisory,
    read_osv_zip,
    zip_directory,
)

OSV = Path(__file__).parent / "osv"
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _load(name: str) -> Advisory:
    path = next(OSV.rglob(f"{name}.json"))
    return parse_advisory(path.read_bytes(), path.name)


@pytest.mark.parametrize(
    ("version", "hit"),
    [
        ("0.1", True),  # introduced 0: everything before the fix
        ("1.26.4", True),
        ("1.26.4.post1", True),  # PEP 440: a post-release of 1.26.4 is before 1.26.5
        ("1.26.5rc1", True),  # a pre-release of the fix is not the fix
        ("1.26.5", False),
        ("1.26.10", False),  # 10 > 5 as numbers, not as text
        ("2.0", False),
        ("not-a-version", False),
    ],
)
def test_a_pypi_range_with_a_fix_uses_pep_440(version: str, hit: bool) -> None:
    assert affects(_load("FOGTEST-PY-0001"), "PyPI", "urllib3", version, NOW) is hit


def test_pypi_names_compare_normalised_and_other_packages_never_match() -> None:
    advisory = _load("FOGTEST-PY-0002")  # names "IDNA"
    assert affects(advisory, "PyPI", "idna", "2.5", NOW)
    assert not affects(advisory, "PyPI", "idna-ssl", "2.5", NOW)
    assert not affects(advisory, "npm", "idna", "2.5", NOW)  # another ecosystem


@pytest.mark.parametrize(
    ("version", "hit"), [("1.9", False), ("2.0", True), ("2.10", True), ("2.10.1", False)]
)
def test_last_affected_includes_that_version_and_nothing_after(version: str, hit: bool) -> None:
    assert affects(_load("FOGTEST-PY-0002"), "PyPI", "idna", version, NOW) is hit


@pytest.mark.parametrize(
    ("version", "hit"),
    [
        ("3.9.0", False),  # between the two ranges
        ("4.0.0", True),
        ("4.17.20", True),
        ("4.17.21-beta.1", True),  # semver: a pre-release comes before the release
        ("4.17.21", False),
        ("2.4.0", True),  # second range: introduced 0, below its limit 3.0.0
        ("4.99.0", False),  # ... at and above the limit, the range never applies
    ],
)
def test_npm_semver_ranges_and_limits(version: str, hit: bool) -> None:
    assert affects(_load("FOGTEST-NPM-0001"), "npm", "lodash", version, NOW) is hit


def test_listed_versions_match_exactly_and_scoped_npm_names_match() -> None:
    advisory = _load("FOGTEST-NPM-0001")
    assert affects(advisory, "npm", "@babel/core", "7.0.0", NOW)
    assert not affects(advisory, "npm", "@babel/core", "7.0.1", NOW)
    assert affects(_load("FOGTEST-PY-0001"), "PyPI", "urllib3", "1.26.0", NOW)
    # "1.26" is the PEP 440 version 1.26.0, listed: matched parsed, not as text.
    assert affects(_load("FOGTEST-PY-0001"), "PyPI", "urllib3", "1.26", NOW)


def test_an_ecosystem_range_for_npm_compares_as_semver() -> None:
    advisory = _load("FOGTEST-NPM-0002")
    assert affects(advisory, "npm", "minimist", "1.2.5", NOW)
    assert not affects(advisory, "npm", "minimist", "1.2.6", NOW)
    assert not affects(advisory, "npm", "minimist", "1.10.0", NOW)


def test_a_withdrawn_advisory_affects_nothing_once_withdrawn() -> None:
    advisory = _load("FOGTEST-PY-0003")
    assert not affects(advisory, "PyPI", "urllib3", "1.0", NOW)
    before = dt.datetime(2026, 11, 3, 8, 0, tzinfo=dt.UTC)
    assert affects(advisory, "PyPI", "urllib3", "1.0", before)


def test_severity_is_the_cvss_base_score_or_githubs_level() -> None:
    assert advisory_score(_load("FOGTEST-PY-0001")) == 9.8
    assert advisory_score(_load("FOGTEST-NPM-0001")) == 8.2
    assert advisory_score(_load("FOGTEST-PY-0002")) == 4.0  # MODERATE, no vector
    assert [level_of(s) for s in (0.0, 0.1, 3.9, 4.0, 7.0, 8.9, 9.0, 10.0)] == [
        "none", "low", "low", "medium", "high", "high", "critical", "critical",
    ]  # fmt: skip
    bare = parse_advisory(b'{"id": "X-1", "modified": "2026-01-01T00:00:00Z"}', "x.json")
    assert advisory_score(bare) is None


@pytest.mark.parametrize(
    ("document", "field", "reason"),
    [
        ({"modified": "2026-01-01T00:00:00Z"}, "id", "Field required"),
        ({"id": "X-1"}, "modified", "Field required"),
        ({"id": "../x", "modified": "2026-01-01T00:00:00Z"}, "id", "pattern"),
        ({"id": "X-1", "modified": "yesterday"}, "modified", "datetime"),
        (
            {"id": "X-1", "modified": "2026-01-01T00:00:00Z", "affected": [{"ranges": [
                {"type": "ECOSYSTEM", "events": [{"introduced": "0", "fixed": "1"}]}]}]},
            "affected.0.ranges.0.events.0",
            "exactly one",
        ),
        (
            {"id": "X-1", "modified": "2026-01-01T00:00:00Z", "affected": [{"ranges": [
                {"type": "RPM", "events": [{"introduced": "0"}]}]}]},
            "affected.0.ranges.0.type",
            "ECOSYSTEM",
        ),
    ],
)  # fmt: skip
def test_a_malformed_advisory_is_refused_with_the_file_and_field(
    document: dict[str, object], field: str, reason: str
) -> None:
    with pytest.raises(AdvisoryError) as caught:
        parse_advisory(json.dumps(document).encode(), "bad.json")
    assert caught.value.source == "bad.json"
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_an_oversized_or_non_json_advisory_is_refused() -> None:
    with pytest.raises(AdvisoryError, match="larger than"):
        parse_advisory(b" " * (MAX_ADVISORY_BYTES + 1), "big.json")
    with pytest.raises(AdvisoryError, match=r"big\.json"):
        parse_advisory(b"{nope", "big.json")


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_a_directory_zips_to_what_the_hub_reads() -> None:
    read = list(read_osv_zip(zip_directory(OSV / "pypi"), "pypi"))
    assert [p.advisory.id for p in read] == [
        "FOGTEST-PY-0001",
        "FOGTEST-PY-0002",
        "FOGTEST-PY-0003",
    ]
    assert read[0].source == "pypi:FOGTEST-PY-0001.json"


def test_malformed_zips_are_refused_naming_the_file() -> None:
    with pytest.raises(VulnArchiveError, match="not a zip file"):
        list(read_osv_zip(b"PK\x03\x04junk", "all.zip"))
    with pytest.raises(VulnArchiveError, match=r"all.zip:README.md: not an OSV advisory"):
        list(read_osv_zip(_zip({"README.md": b"hi"}), "all.zip"))
    with pytest.raises(AdvisoryError, match=r"all.zip:B-1.json: id"):
        list(read_osv_zip(_zip({"B-1.json": b'{"modified": "2026-01-01T00:00:00Z"}'}), "all.zip"))
    # A bomb: small compressed, over the per-file limit once inflated.
    bomb = _zip({"big.json": b" " * (MAX_ADVISORY_BYTES + 10)})
    assert len(bomb) < 10_000
    with pytest.raises(VulnArchiveError, match=r"all.zip:big.json: larger than"):
        list(read_osv_zip(bomb, "all.zip"))


def test_an_empty_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(VulnArchiveError, match="no OSV advisory"):
        zip_directory(tmp_path)
