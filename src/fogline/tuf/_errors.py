"""Errors of TUF metadata handling, shared by the CLI, the hub and the node.

FoglineError
  TufError                  base of this package
    TufMetadataError        metadata is malformed or does not verify: role, reason
    TufKeyError             a key file is missing, unreadable or not Ed25519: path, reason
"""

from pathlib import Path

from fogline._errors import FoglineError


class TufError(FoglineError):
    """Base of the TUF errors."""


class TufMetadataError(TufError):
    """Metadata of `role` is malformed, unsigned or out of order."""

    def __init__(self, role: str, reason: str) -> None:
        super().__init__(f"TUF {role} metadata: {reason}")
        self.role, self.reason = role, reason


class TufKeyError(TufError):
    """A key file that cannot sign TUF metadata."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason
