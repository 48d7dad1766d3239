"""Which modules a release key may sign: its scope, a list of name patterns.

A `ReleaseKey` manifest may say `modules: [thermo-*, gateway]`; the hub
refuses a push signed by a key whose scope does not cover the module, and
nodes refuse such a release too. Patterns are shell globs matched with
`fnmatchcase` on the whole module name (`*`, `?`, `[a-f]`, `[!x]`).

Scopes travel in the desired document (`releaseKeyScopes`: key name ->
patterns, only for scoped keys) and in the enrollment answer
(`release_key_scopes`), so a key without a scope looks exactly as before.
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Final

MAX_SCOPE_PATTERNS: Final = 64
MAX_PATTERN_CHARS: Final = 128
# Module-name characters plus glob syntax; nothing that could mean a path.
_PATTERN_RE: Final = re.compile(r"[a-z0-9*?\[\]!-]+", re.ASCII)


def check_module_pattern(pattern: object) -> str:
    """Return `pattern` if it is a module-name glob.

    Raises:
        ValueError: not a string, empty, too long, or characters other than
            lowercase letters, digits, '-', and the glob's '*', '?', '[', ']', '!'.
    """
    if not isinstance(pattern, str):
        raise ValueError(f"must be a module name pattern (got {type(pattern).__name__})")
    if not 0 < len(pattern) <= MAX_PATTERN_CHARS or not _PATTERN_RE.fullmatch(pattern):
        raise ValueError(
            f"must be 1-{MAX_PATTERN_CHARS} lowercase letters, digits, '-' and glob "
            f"characters * ? [ ] ! (got {pattern[:60]!r})"
        )
    return pattern


@dataclass(frozen=True, slots=True)
class KeyScope:
    """The modules one release key may sign.

    `grants` holds the pattern lists of every trust source that scopes the
    key; a module is covered when it matches a pattern of each grant (the
    sources' intersection). No grant at all: every module. An empty grant
    covers nothing (a malformed scope fails closed).
    """

    grants: tuple[tuple[str, ...], ...] = ()

    @classmethod
    def of(cls, patterns: Sequence[str] | None) -> "KeyScope":
        """The scope one source gives: None (unscoped) or its patterns."""
        return cls() if patterns is None else cls((tuple(patterns),))

    @property
    def is_unscoped(self) -> bool:
        return not self.grants

    def narrowed(self, other: "KeyScope") -> "KeyScope":
        """Covered by both this scope and `other`."""
        return KeyScope(self.grants + tuple(g for g in other.grants if g not in self.grants))

    def covers(self, module: str) -> bool:
        return all(any(fnmatchcase(module, p) for p in grant) for grant in self.grants)

    def describe(self) -> str:
        if not self.grants:
            return "every module"
        return " and ".join("[" + ", ".join(grant) + "]" for grant in self.grants)


def union_of_patterns(listings: Iterable[Sequence[str] | None]) -> tuple[str, ...] | None:
    """One source listing a key several times (under several names): the key
    may sign what any listing allows; None (unscoped) if any listing is."""
    merged: list[str] = []
    for patterns in listings:
        if patterns is None:
            return None
        merged += [p for p in patterns if p not in merged]
    return tuple(merged)


def parse_key_scopes(raw: object) -> dict[str, tuple[str, ...]]:
    """`releaseKeyScopes` / `release_key_scopes` as received: key name -> patterns.

    A malformed entry becomes an empty pattern list, which covers nothing:
    a scope that cannot be read must not widen into "every module".
    """
    if not isinstance(raw, Mapping):
        return {}
    scopes: dict[str, tuple[str, ...]] = {}
    for name, patterns in raw.items():
        try:
            if not isinstance(patterns, list) or len(patterns) > MAX_SCOPE_PATTERNS:
                raise ValueError("not a list of patterns")
            scopes[str(name)] = tuple(check_module_pattern(p) for p in patterns)
        except ValueError:
            scopes[str(name)] = ()
    return scopes
