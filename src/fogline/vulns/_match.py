"""Does an advisory affect a package version? OSV's rules, real version semantics.

Per the OSV schema: a version is affected when it is listed in `versions`,
or when a `SEMVER` or `ECOSYSTEM` range's events, sorted by version, leave it
affected: `introduced` (0 is before everything) opens, `fixed` closes at
that version, `last_affected` closes after it, and a `limit` is a version at
and above which the range never applies. `GIT` ranges name commits, not
versions, and are not evaluated. Versions compare as their ecosystem
defines: PEP 440 for PyPI (`packaging`), Semantic Versioning for npm and
for every SEMVER range (`semver`). A version that does not parse under those
rules matches only by `versions`.
"""

import datetime as dt
from collections.abc import Callable
from typing import Any, Final

import semver
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion
from packaging.version import Version as Pep440Version

from ._osv import Advisory, Affected, Range

SUPPORTED_ECOSYSTEMS: Final = ("PyPI", "npm")
Key = Callable[[str], Any]  # version text -> comparable; raises ValueError


def _pep440(text: str) -> Pep440Version:
    try:
        return Pep440Version(text)
    except InvalidVersion as exc:
        raise ValueError(str(exc)) from None


def _semver(text: str) -> semver.Version:
    return semver.Version.parse(text.removeprefix("v"))


_KEYS: Final[dict[str, Key]] = {"PyPI": _pep440, "npm": _semver}


def package_name(ecosystem: str, name: str) -> str:
    """The name as the ecosystem compares it (PEP 503 normalised for PyPI)."""
    return canonicalize_name(name) if ecosystem == "PyPI" else name


def affects(advisory: Advisory, ecosystem: str, name: str, version: str, now: dt.datetime) -> bool:
    """True when `advisory` (not withdrawn at `now`) affects `name` `version` in `ecosystem`."""
    if advisory.is_withdrawn(now):
        return False
    wanted = package_name(ecosystem, name)
    for affected in advisory.affected:
        package = affected.package
        if package is None or package.ecosystem != ecosystem:
            continue
        if package_name(ecosystem, package.name) != wanted:
            continue
        if _affected_version(affected, ecosystem, version):
            return True
    return False


def _affected_version(affected: Affected, ecosystem: str, version: str) -> bool:
    if version in affected.versions:
        return True
    ecosystem_key = _KEYS.get(ecosystem)
    if ecosystem_key is not None and affected.versions:
        # "1.0" and "1.0.0" are one PEP 440 version: compare parsed, not as text.
        try:
            parsed = ecosystem_key(version)
            if any(_equal(ecosystem_key, listed, parsed) for listed in affected.versions):
                return True
        except ValueError:
            pass
    for range_ in affected.ranges:
        key = _semver if range_.type == "SEMVER" else ecosystem_key
        if range_.type == "GIT" or key is None:
            continue
        if _in_range(range_, key, version):
            return True
    return False


def _equal(key: Key, listed: str, parsed: Any) -> bool:
    try:
        return bool(key(listed) == parsed)
    except ValueError:
        return False


def _in_range(range_: Range, key: Key, version: str) -> bool:
    try:
        target = key(version)
    except ValueError:
        return False
    events: list[tuple[Any, int, str]] = []
    for event in range_.events:
        kind, text = event.kind_and_version()
        if kind == "introduced" and text == "0":
            events.append((None, 0, kind))  # before every version
            continue
        try:
            at = key(text)
        except ValueError:
            return False  # a range we cannot order is not guessed at
        if kind == "limit":
            if target >= at:
                return False
            continue
        # At one version, close before open: (fixed 1.2, introduced 1.2) reopens.
        events.append((at, 0 if kind != "introduced" else 1, kind))
    # "introduced: 0" first, then by version; at one version, closing events
    # before opening ones.
    ordered = [e for e in events if e[0] is None] + sorted(
        (e for e in events if e[0] is not None), key=_order
    )
    affected = False
    for at, _, kind in ordered:
        if kind == "introduced":
            if at is None or target >= at:
                affected = True
        elif kind == "fixed":
            if target >= at:
                affected = False
        elif kind == "last_affected" and target > at:
            affected = False
    return affected


def _order(event: tuple[Any, int, str]) -> Any:
    return _Sortable(event[0]), event[1]


class _Sortable:
    """Versions of one kind, ordered through their own comparisons."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: "_Sortable") -> bool:
        return bool(self.value < other.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Sortable) and bool(self.value == other.value)

    __hash__ = None  # type: ignore[assignment]
