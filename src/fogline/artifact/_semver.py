"""Semantic Versioning 2.0.0, strictly: `1.2.0`, `2.0.0-rc.1`, `1.0.0+build.5`.

Strict means what semver.org says and nothing more: no `v` prefix, no
leading zeros in numeric parts, no missing minor or patch. Release versions
end up in URLs, file names and signatures, so one spelling per version.
"""

import re
from dataclasses import dataclass
from typing import Any, Final

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

_NUM: Final = r"(?:0|[1-9][0-9]*)"
_PRE_ID: Final = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_BUILD_ID: Final = r"[0-9A-Za-z-]+"
_SEMVER_RE: Final = re.compile(
    rf"({_NUM})\.({_NUM})\.({_NUM})"
    rf"(?:-({_PRE_ID}(?:\.{_PRE_ID})*))?"
    rf"(?:\+({_BUILD_ID}(?:\.{_BUILD_ID})*))?",
    re.ASCII,
)
# Far above any real version; bounds the regex and the integers parsed.
MAX_VERSION_CHARS: Final = 128


@dataclass(frozen=True, slots=True)
class Version:
    """A parsed semantic version.

    Ordering follows semver precedence (`1.0.0-rc.1 < 1.0.0 < 1.0.1`). Build
    metadata does not change precedence; it only breaks ties, so that `<`
    stays consistent with `==` (which compares every part) and sorting is
    deterministic.
    """

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + ".".join(self.build)
        return text

    @property
    def is_prerelease(self) -> bool:
        """True for versions like `1.0.0-rc.1`, which precede `1.0.0`."""
        return bool(self.prerelease)

    def precedence_key(self) -> tuple[Any, ...]:
        """A sort key of semver precedence alone (build metadata ignored)."""
        # A release ranks above all of its pre-releases; numeric identifiers
        # rank below alphanumeric ones and compare as numbers; a longer list
        # of identifiers wins when all shared ones are equal (tuple order).
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, not self.prerelease, pre)

    def _key(self) -> tuple[Any, ...]:
        return (*self.precedence_key(), self.build)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() <= other._key()

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() > other._key()

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() >= other._key()

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        # In models a Version is written and read as its string form.
        return core_schema.no_info_plain_validator_function(
            _validate_version, serialization=core_schema.to_string_ser_schema()
        )


def parse_semver(text: str) -> Version:
    """Parse a strict semantic version such as `1.2.0` or `2.0.0-rc.1+build.7`.

    Raises:
        ValueError: not a semantic version; the message shows the text and an example.
    """
    if not isinstance(text, str):
        raise ValueError(f"must be a version string like 1.2.0 (got {type(text).__name__})")
    match = _SEMVER_RE.fullmatch(text) if len(text) <= MAX_VERSION_CHARS else None
    if match is None:
        raise ValueError(
            "must be a semantic version like 1.2.0 or 2.0.0-rc.1 (no 'v' prefix, "
            f"no leading zeros, at most {MAX_VERSION_CHARS} characters; got {text[:80]!r})"
        )
    major, minor, patch, pre, build = match.groups()
    return Version(
        int(major),
        int(minor),
        int(patch),
        tuple(pre.split(".")) if pre else (),
        tuple(build.split(".")) if build else (),
    )


def _validate_version(value: object) -> Version:
    if isinstance(value, Version):
        return value
    if not isinstance(value, str):
        # YAML reads `version: 1.2` as a float; say so rather than "invalid".
        raise ValueError(
            f"must be a version string like 1.2.0 (got {type(value).__name__} {value!r}; "
            "quote it in YAML)"
        )
    return parse_semver(value)
