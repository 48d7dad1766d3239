"""What the artifact package raises, split by who is at fault."""

from collections.abc import Sequence
from pathlib import Path

from .._errors import FoglineError

# A module file with many mistakes is reported in full through
# ModuleSpecError.problems; the message shows the first few so a terminal line
# or an HTTP error body stays readable.
_PROBLEMS_SHOWN = 5


class ArtifactError(FoglineError):
    """Base class of everything the artifact package raises on purpose."""


class ModuleSpecError(ArtifactError):
    """The module author's `fogline-module.yaml` is wrong.

    `source` names the file (or `archive:fogline-module.yaml`), `field` is the
    path inside the document such as `health.timeout` or `command[0]` ("" for
    the document as a whole), `reason` says what was expected. `problems`
    holds every (field, reason) found, the first one also in field/reason.
    """

    def __init__(self, source: str, problems: Sequence[tuple[str, str]]) -> None:
        if not problems:
            raise ValueError("ModuleSpecError needs at least one problem")
        self.source = source
        self.problems: tuple[tuple[str, str], ...] = tuple(problems)
        self.field, self.reason = self.problems[0]
        shown = [f"{field}: {reason}" if field else reason for field, reason in problems]
        text = "; ".join(shown[:_PROBLEMS_SHOWN])
        if len(shown) > _PROBLEMS_SHOWN:
            text += f"; and {len(shown) - _PROBLEMS_SHOWN} more"
        super().__init__(f"{source}: {text}")


class UntrustedReleaseError(ArtifactError):
    """The release cannot be trusted: unknown key, bad signature, digest mismatch,
    malformed signature envelope, or not the name/version that was asked for."""


class UnsafeArchiveError(ArtifactError):
    """An archive (or a directory about to become one) is hostile, malformed or
    over its limits; `member` names the offending entry when there is one."""

    def __init__(self, archive: str | Path, reason: str, member: str | None = None) -> None:
        self.archive = str(archive)
        self.reason = reason
        self.member = member
        where = f"{self.archive}: {member!r}" if member is not None else self.archive
        super().__init__(f"{where}: {reason}")


class ReleaseKeyError(ArtifactError):
    """A release key file is missing, malformed, not Ed25519, or would be overwritten."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
