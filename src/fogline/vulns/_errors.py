"""Errors of the vulnerability package.

FoglineError
  VulnError
    AdvisoryError     an OSV file is malformed: the file, the field and the reason
    VulnArchiveError  an OSV zip or directory is malformed or too large: the file and the reason
"""

from fogline._errors import FoglineError


class VulnError(FoglineError):
    """Base class of everything fogline.vulns raises on purpose."""


class AdvisoryError(VulnError):
    """An OSV advisory file that is not one."""

    def __init__(self, source: str, field: str, reason: str) -> None:
        where = f"{source}: {field}: " if field else f"{source}: "
        super().__init__(f"{where}{reason}")
        self.source, self.field, self.reason = source, field, reason


class VulnArchiveError(VulnError):
    """An OSV zip (or directory) the import refuses."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source, self.reason = source, reason
