"""An advisory's severity as a CVSS base score (0.0-10.0) and its qualitative level.

OSV gives CVSS vectors (`severity: [{type: CVSS_V3, score: "CVSS:3.1/..."}]`),
not numbers: the base score is computed from the vector (`cvss`). The highest
of the advisory's and its affected entries' scores counts. Without a vector,
GitHub's `database_specific.severity` (LOW, MODERATE, HIGH, CRITICAL) stands
for the lowest score of its level. None: the advisory says nothing.
"""

from typing import Final, Literal

from cvss import CVSS2, CVSS3, CVSS4
from cvss.exceptions import CVSSError

from ._osv import Advisory, Severity

Level = Literal["none", "low", "medium", "high", "critical"]
# CVSS v3/v4 qualitative ratings: the lowest score of each level.
LEVEL_FLOOR: Final[dict[Level, float]] = {
    "none": 0.0,
    "low": 0.1,
    "medium": 4.0,
    "high": 7.0,
    "critical": 9.0,
}
_GITHUB: Final[dict[str, Level]] = {
    "LOW": "low",
    "MODERATE": "medium",
    "MEDIUM": "medium",
    "HIGH": "high",
    "CRITICAL": "critical",
}


def level_of(score: float) -> Level:
    """The qualitative level of a CVSS base score."""
    found: Level = "none"
    for level, floor in LEVEL_FLOOR.items():
        if score >= floor:
            found = level
    return found


def advisory_score(advisory: Advisory) -> float | None:
    """The highest CVSS base score the advisory gives, or None."""
    scores = [_score(s) for s in advisory.severity]
    scores += [_score(s) for a in advisory.affected for s in a.severity]
    known = [s for s in scores if s is not None]
    if known:
        return max(known)
    specific = (advisory.database_specific or {}).get("severity")
    if isinstance(specific, str) and specific.upper() in _GITHUB:
        return LEVEL_FLOOR[_GITHUB[specific.upper()]]
    return None


def _score(severity: Severity) -> float | None:
    try:
        if severity.type == "CVSS_V3":
            return float(CVSS3(severity.score).scores()[0])
        if severity.type == "CVSS_V4":
            return float(CVSS4(severity.score).base_score)
        if severity.type == "CVSS_V2":
            return float(CVSS2(severity.score).scores()[0])
    except (CVSSError, ValueError, KeyError, IndexError):
        return None
    return None
