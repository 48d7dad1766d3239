"""What the manifest package raises, and the problems it reports."""

from collections.abc import Sequence
from dataclasses import dataclass

from .._errors import FoglineError

# A manifest with thousands of mistakes is still reported in full through
# ManifestError.problems; the message shows the first ones so a terminal
# or an HTTP error body stays readable.
MAX_PROBLEMS_SHOWN = 100


@dataclass(frozen=True, slots=True)
class Problem:
    """One mistake in a manifest: where it is and why it is wrong.

    `line` and `column` are 1-based; both are None when the problem is about
    the whole file (it cannot be read, it is too large). `path` is the field
    inside the document, like `spec.selector.matchExpressions[1].operator`,
    or "" when the problem is about the document or the file itself.
    """

    file: str
    line: int | None
    column: int | None
    path: str
    reason: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        if self.path:
            return f"{where}: {self.path}: {self.reason}"
        return f"{where}: {self.reason}"


class ManifestError(FoglineError):
    """The operator's manifests are wrong; `problems` lists every mistake found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        if not problems:
            raise ValueError("ManifestError needs at least one problem")
        self.problems: tuple[Problem, ...] = tuple(problems)
        lines = [str(problem) for problem in self.problems[:MAX_PROBLEMS_SHOWN]]
        hidden = len(self.problems) - MAX_PROBLEMS_SHOWN
        if hidden > 0:
            lines.append(f"... and {hidden} more problems")
        super().__init__("\n".join(lines))


class BlockError(FoglineError):
    """Raised by a block validator (see `BlockValidators`) for bad fields.

    `path` is relative to the block entry the validator was given, e.g.
    `("health", "timeout")` for a module entry; `load_manifests` locates it in
    the YAML and reports it as a Problem, so it never reaches its callers.
    A validator that finds several problems passes the others in `more`:
    every one is reported, each at its own place (`problems`).
    """

    def __init__(
        self,
        path: Sequence[str | int],
        reason: str,
        *,
        more: Sequence[tuple[Sequence[str | int], str]] = (),
    ) -> None:
        self.path: tuple[str | int, ...] = tuple(path)
        self.reason = reason
        self.problems: tuple[tuple[tuple[str | int, ...], str], ...] = (
            (self.path, reason),
            *((tuple(where), why) for where, why in more),
        )
        super().__init__(
            "; ".join(
                f"{'.'.join(str(part) for part in where) or '(entry)'}: {why}"
                for where, why in self.problems
            )
        )
